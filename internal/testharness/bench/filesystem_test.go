package bench

import (
	"strings"
	"testing"
)

// mountinfo lines as Linux writes them: the root of this machine (ext4 on /dev/vda), a
// tmpfs, an ext4 with a journal, a mount point with a space, and an optional field
// ("shared:1") before the separator.
const testMountinfo = `26 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
24 23 0:22 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683748k
40 26 8:1 / /srv/results rw,relatime shared:1 - ext4 /dev/sdb1 rw
41 26 8:2 / /srv/my\040data rw,relatime - xfs /dev/sdc rw
42 26 0:50 / /srv/resultsdir rw - tmpfs none rw
malformed line without a separator
`

func TestMountOf(t *testing.T) {
	t.Parallel()
	cases := []struct {
		path, typ, source string
	}{
		{"/tmp/taskgrid-stack-1", "ext4", "/dev/vda"},
		{"/", "ext4", "/dev/vda"},
		{"/dev/shm/x", "tmpfs", "tmpfs"},
		{"/srv/results", "ext4", "/dev/sdb1"},
		{"/srv/results/a/b", "ext4", "/dev/sdb1"},
		{"/srv/resultsdir/a", "tmpfs", "none"}, // a prefix of the name is not a parent
		{"/srv/my data/x", "xfs", "/dev/sdc"},
	}
	for _, c := range cases {
		got, ok := mountOf(testMountinfo, c.path)
		if !ok || got.Type != c.typ || got.Source != c.source {
			t.Errorf("mountOf(%q) = %+v, %v; want %s on %s", c.path, got, ok, c.typ, c.source)
		}
	}
	if got, ok := mountOf("", "/tmp"); ok {
		t.Errorf("no mounts: got %+v", got)
	}
}

func TestHasJournal(t *testing.T) {
	t.Parallel()
	cases := []struct {
		jbd2   []string
		source string
		want   bool
	}{
		{nil, "/dev/vda", false}, // this machine: /proc/fs/jbd2 is empty
		{[]string{"vda-8"}, "/dev/vda", true},
		{[]string{"sda1-8", "vdb-8"}, "/dev/vda", false},
		{[]string{"vda1-8"}, "/dev/vda", false}, // another partition's journal
		{[]string{"dm-0-8"}, "/dev/dm-0", true},
	}
	for _, c := range cases {
		if got := hasJournal(c.jbd2, c.source); got != c.want {
			t.Errorf("hasJournal(%v, %q) = %v, want %v", c.jbd2, c.source, got, c.want)
		}
	}
}

// The report says so only for ext4 without a journal.
func TestFileSystemNote(t *testing.T) {
	t.Parallel()
	yes, no := true, false
	cases := []struct {
		fs   FileSystem
		note bool
	}{
		{FileSystem{Path: "/tmp", Type: "ext4", Source: "/dev/vda", Journal: &no}, true},
		{FileSystem{Path: "/tmp", Type: "ext4", Source: "/dev/vda", Journal: &yes}, false},
		{FileSystem{Path: "/tmp", Type: "xfs", Source: "/dev/sdc"}, false},
	}
	for _, c := range cases {
		note := c.fs.Note()
		if (note != "") != c.note || c.note && !strings.Contains(note, "/dev/vda") {
			t.Errorf("%+v: note %q", c.fs, note)
		}
	}
	var out strings.Builder
	r := &Report{FileSystem: &cases[0].fs}
	if err := r.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ext4 without a journal") {
		t.Errorf("the table does not say it:\n%s", out.String())
	}
}

// On this machine's kind (the check runs where the tests run): the file system of the
// temporary directory is found, whatever it is.
func TestFileSystemOfTempDir(t *testing.T) {
	t.Parallel()
	fs, err := fileSystemOf(t.TempDir())
	if err != nil || fs.Type == "" || fs.Source == "" {
		t.Fatalf("fileSystemOf: %+v, %v", fs, err)
	}
	if (fs.Type == "ext4") != (fs.Journal != nil) {
		t.Errorf("journal known %v for type %s", fs.Journal != nil, fs.Type)
	}
}
