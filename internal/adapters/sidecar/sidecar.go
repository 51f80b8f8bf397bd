// Package sidecar is the one place that knows how an app reaches its Dapr sidecar: the
// ports dapr run exports, a gRPC client that connects lazily (an app may start before
// its sidecar), and the sidecar's health and metadata endpoints.
package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/taskgrid/taskgrid/internal/platform/env"
)

// Config is where the sidecar listens. dapr run exports DAPR_HTTP_PORT and DAPR_GRPC_PORT.
type Config struct {
	Host     string
	HTTPPort int
	GRPCPort int
	// APIToken (DAPR_API_TOKEN) is what the sidecar requires in dapr-api-token on its
	// API. The SDK's gRPC client reads the same variable itself; the HTTP calls here
	// send it from this field.
	APIToken env.Secret
}

// LoadConfig reads the sidecar's ports and API token from the environment.
func LoadConfig(r *env.Reader) Config {
	return Config{
		Host:     r.String("DAPR_HOST", "127.0.0.1"),
		HTTPPort: r.Port("DAPR_HTTP_PORT", 3500),
		GRPCPort: r.Port("DAPR_GRPC_PORT", 50001),
		APIToken: r.Secret("DAPR_API_TOKEN"),
	}
}

// TokenHeader is the header of the Dapr API token.
const TokenHeader = "dapr-api-token"

// NewRequest is an HTTP request to the sidecar's API at path, with the API token.
func (c Config) NewRequest(ctx context.Context, method, path string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.HTTPBase()+path, nil)
	if err != nil {
		return nil, err
	}
	if c.APIToken != "" {
		req.Header.Set(TokenHeader, c.APIToken.Reveal())
	}
	return req, nil
}

// HTTPBase is the sidecar's HTTP API root, e.g. http://127.0.0.1:3500.
func (c Config) HTTPBase() string { return "http://" + c.Host + ":" + strconv.Itoa(c.HTTPPort) }

// GRPCAddr is the sidecar's gRPC API address.
func (c Config) GRPCAddr() string { return c.Host + ":" + strconv.Itoa(c.GRPCPort) }

// Client is a Dapr client plus the sidecar's HTTP endpoints that the SDK does not cover.
type Client struct {
	dapr.Client
	cfg  Config
	http *http.Client
}

// MaxMessageBytes is the largest message between an app and its sidecar, and between
// sidecars: a submission's record with its payload (up to 16 MiB), a batch of results to
// the storekeeper (up to 96 MiB of JSON), a result read back. daprd refuses larger ones
// than its --max-body-size (4 MiB unless set: a 5 MB image to convert was answered 503
// for ever), so every sidecar runs with this much: dapr.yaml's daprHTTPMaxRequestSize, the
// chart's dapr.io/max-body-size and the test stacks' flag, each checked against it.
const MaxMessageBytes = 128 << 20

// New returns a client that connects lazily: it does not wait for the sidecar, so an
// app can serve its health endpoint while the sidecar starts (daprd probes the app).
// Call WaitReady before the first call that needs components.
func New(cfg Config) (*Client, error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
	}
	if cfg.APIToken != "" {
		// The SDK adds the token only on connections it dials itself: on this one, every
		// call carries it through these interceptors.
		token := cfg.APIToken.Reveal()
		opts = append(opts,
			grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, o ...grpc.CallOption) error {
				return invoke(metadata.AppendToOutgoingContext(ctx, TokenHeader, token), method, req, reply, cc, o...)
			}),
			grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, stream grpc.Streamer, o ...grpc.CallOption) (grpc.ClientStream, error) {
				return stream(metadata.AppendToOutgoingContext(ctx, TokenHeader, token), desc, cc, method, o...)
			}))
	}
	conn, err := grpc.NewClient(cfg.GRPCAddr(), opts...)
	if err != nil {
		return nil, fmt.Errorf("create dapr grpc client for %s: %w", cfg.GRPCAddr(), err)
	}
	c := dapr.NewClientWithConnection(conn)
	c.WithAuthToken("") // the interceptors send the configured token (the SDK would add DAPR_API_TOKEN again)
	return &Client{
		Client: c,
		cfg:    cfg,
		http:   &http.Client{Timeout: 5 * time.Second},
	}, nil
}

// Ready reports whether the sidecar's components are initialised (outbound health).
func (c *Client) Ready(ctx context.Context) error {
	req, err := c.cfg.NewRequest(ctx, http.MethodGet, "/v1.0/healthz/outbound")
	if err != nil {
		return fmt.Errorf("check sidecar health: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("check sidecar health at %s: %w", c.cfg.HTTPBase(), err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("sidecar at %s not ready: status %d", c.cfg.HTTPBase(), resp.StatusCode)
	}
	return nil
}

// WaitReady polls Ready until it succeeds or ctx ends.
func (c *Client) WaitReady(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.Ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for sidecar: %w (last: %w)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// Metadata is the part of the sidecar's metadata API the apps and tests read.
type Metadata struct {
	ID         string      `json:"id"`
	Components []Component `json:"components"`
	Actors     []struct {
		Type  string `json:"type"`
		Count int    `json:"count"`
	} `json:"actors"`
	Subscriptions []struct {
		PubsubName string `json:"pubsubname"`
		Topic      string `json:"topic"`
	} `json:"subscriptions"`
}

// Component is one loaded Dapr component.
type Component struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Version string `json:"version"`
}

// GetMetadata reads the metadata API of the sidecar cfg names over HTTP.
func GetMetadata(ctx context.Context, cfg Config) (Metadata, error) {
	var md Metadata
	err := readMetadata(ctx, http.DefaultClient, cfg, &md)
	return md, err
}

// PlacementConnected reports whether the sidecar's actor runtime is connected to
// placement (its metadata's actorRuntime.placement).
func (c *Client) PlacementConnected(ctx context.Context) (bool, error) {
	var md struct {
		ActorRuntime struct {
			Placement string `json:"placement"`
		} `json:"actorRuntime"`
	}
	if err := readMetadata(ctx, c.http, c.cfg, &md); err != nil {
		return false, err
	}
	return md.ActorRuntime.Placement == "placement: connected", nil
}

// readMetadata decodes the sidecar's metadata API (GET /v1.0/metadata, with the API
// token) into md.
func readMetadata(ctx context.Context, hc *http.Client, cfg Config, md any) error {
	req, err := cfg.NewRequest(ctx, http.MethodGet, "/v1.0/metadata")
	if err != nil {
		return fmt.Errorf("read sidecar metadata: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("read sidecar metadata at %s: %w", cfg.HTTPBase(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("read sidecar metadata at %s: status %d", cfg.HTTPBase(), resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(md); err != nil {
		return fmt.Errorf("decode sidecar metadata: %w", err)
	}
	return nil
}
