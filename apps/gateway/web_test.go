package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

func TestWebFiles(t *testing.T) {
	t.Parallel()
	r := chi.NewRouter()
	MountWeb(r)
	tests := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script src="/static/app.js" defer></script>`},
		{"/static/app.js", "text/javascript; charset=utf-8", "new EventSource("},
		{"/static/style.css", "text/css; charset=utf-8", "progress"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != tt.contentType {
			t.Errorf("GET %s: %d, Content-Type %q; want 200, %q", tt.path, rec.Code, rec.Header().Get("Content-Type"), tt.contentType)
		}
		if !strings.Contains(rec.Body.String(), tt.contains) {
			t.Errorf("GET %s: body does not contain %q", tt.path, tt.contains)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q, want scripts from the gateway only", tt.path, csp)
		}
	}
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/static/missing.js", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /static/missing.js: %d, want 404", rec.Code)
	}
}
