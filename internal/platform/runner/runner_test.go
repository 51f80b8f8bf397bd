package runner

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestGroup(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name string
		fns  []Func
		want error
	}{
		{"first error cancels the rest", []Func{
			func(ctx context.Context) error { return boom },
			func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
		}, boom},
		{"nil return leaves the others running", []Func{
			func(ctx context.Context) error { return nil },
			func(ctx context.Context) error {
				select {
				case <-ctx.Done():
					return errors.New("cancelled by a fn that returned nil")
				case <-time.After(50 * time.Millisecond):
					return nil
				}
			},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := Group(t.Context(), tt.fns...); !errors.Is(err, tt.want) {
				t.Fatalf("Group() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestServeHTTPShutsDownWithContext(t *testing.T) {
	t.Parallel()
	ln, err := Listen("127.0.0.1:0", "test server")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), ReadHeaderTimeout: time.Second}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ServeHTTP(ctx, srv, ln) }()

	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body = %q", body)
	}
	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeHTTP() = %v, want nil after cancel", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener still accepts connections after shutdown")
	}
}

func TestListenPortTaken(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(ln.Addr().String(), "gateway")
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "gateway") {
		t.Fatalf("Listen() on a taken port = %v, want a clear 'already in use' error", err)
	}
}
