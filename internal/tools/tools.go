//go:build tools

// Package tools pins modules that the project needs before code imports them
// (the local Kafka broker and test helpers), so `go mod tidy` keeps them.
package tools

import (
	_ "github.com/dapr/go-sdk/client"
	_ "github.com/go-chi/chi/v5"
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/google/uuid"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/twmb/franz-go/pkg/kfake"
	_ "github.com/twmb/franz-go/pkg/kgo"
	_ "go.uber.org/goleak"
)
