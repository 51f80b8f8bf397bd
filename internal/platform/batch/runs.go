package batch

// Runs splits n items of the given sizes into consecutive runs of at most limit in all
// (an item larger than limit makes a run alone), and calls f with each run's bounds,
// items[from:to], in order: a batch that goes in several calls, none of them larger
// than a message may be. size is called once for each item.
func Runs(n int, size func(i int) int64, limit int64, f func(from, to int)) {
	if n == 0 {
		return
	}
	from, sum := 0, size(0)
	for to := 1; to < n; to++ {
		s := size(to)
		if sum+s > limit {
			f(from, to)
			from, sum = to, 0
		}
		sum += s
	}
	f(from, n)
}
