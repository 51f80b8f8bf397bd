package main

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/go-chi/chi/v5"
)

// webFiles is the web page: plain HTML, CSS and JavaScript, embedded so the binary
// serves it with no build step.
//
//go:embed web
var webFiles embed.FS

// Web routes.
const (
	routeWeb       = "/"
	routeWebStatic = "/static/"
)

// webHeaders are set on every file of the page. The policy allows only the page's own
// files and API: nothing inline, nothing from elsewhere.
var webHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	"X-Content-Type-Options": "nosniff",
	"Cache-Control":          "no-cache", // the files change with the binary, which sets no validators
	"Referrer-Policy":        "same-origin",
}

// MountWeb serves the web page at / and its files under /static/.
func MountWeb(r chi.Router) {
	files, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic("gateway: embedded web files: " + err.Error()) // the embed directive guarantees the directory
	}
	static := http.StripPrefix(routeWebStatic, http.FileServerFS(files))
	withHeaders := func(h http.Handler) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for k, v := range webHeaders {
				w.Header().Set(k, v)
			}
			h.ServeHTTP(w, r)
		}
	}
	r.Get(routeWeb, withHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, files, "index.html")
	})))
	r.Get(routeWebStatic+"*", withHeaders(static))
}
