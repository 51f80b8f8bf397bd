package stacktest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Metrics are the samples of one /metrics scrape, by series ("name{labels}", or
// "name" for a series without labels).
type Metrics map[string]float64

// ScrapeMetrics reads the Prometheus text exposition at base+"/metrics".
func ScrapeMetrics(ctx context.Context, base string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %d %v", base, resp.StatusCode, err)
	}
	m := Metrics{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			return nil, fmt.Errorf("scrape %s: bad sample %q", base, line)
		}
		m[line[:i]] = v
	}
	return m, nil
}

// MustScrapeMetrics is ScrapeMetrics for a test: a scrape that fails fails the test.
func MustScrapeMetrics(t testing.TB, base string) Metrics {
	t.Helper()
	m, err := ScrapeMetrics(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Sum adds the samples of metric name whose labels include every label="value" pair
// given in labels (e.g. `outcome="ok"`).
func (m Metrics) Sum(name string, labels ...string) float64 {
	var total float64
	for series, v := range m {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(","+strings.TrimSuffix(rest, "}")+",", ","+l+",") {
				ok = false
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// ByLabel returns the samples of metric name by the value of its one label.
func (m Metrics) ByLabel(name string) map[string]float64 {
	out := map[string]float64{}
	for series, v := range m {
		rest, ok := strings.CutPrefix(series, name+"{")
		if !ok {
			continue
		}
		_, value, _ := strings.Cut(strings.TrimSuffix(rest, "}"), "=")
		out[strings.Trim(value, `"`)] = v
	}
	return out
}
