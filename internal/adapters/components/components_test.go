package components

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

type resource struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Type     string `yaml:"type"`
		Metadata []struct {
			Name         string `yaml:"name"`
			Value        string `yaml:"value"`
			SecretKeyRef *struct {
				Name string `yaml:"name"`
			} `yaml:"secretKeyRef"`
		} `yaml:"metadata"`
	} `yaml:"spec"`
	Auth struct {
		SecretStore string `yaml:"secretStore"`
	} `yaml:"auth"`
	Scopes []string `yaml:"scopes"`
}

func loadComponents(t *testing.T) map[string]resource {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "components", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no components/*.yaml: %v", err)
	}
	out := map[string]resource{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r resource
		if err := yaml.Unmarshal(data, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if r.Kind == "Component" {
			if _, dup := out[r.Metadata.Name]; dup {
				t.Fatalf("component %s defined twice", r.Metadata.Name)
			}
			out[r.Metadata.Name] = r
		}
	}
	return out
}

func TestComponentsMatchConstants(t *testing.T) {
	t.Parallel()
	comps := loadComponents(t)
	want := map[string]string{
		PubSub: "pubsub.kafka", StateStore: "state.redis", AnalyticsDB: "bindings.mysql", Secrets: "secretstores.local.env",
		Fanout: "pubsub.kafka",
	}
	if len(comps) != len(want) {
		t.Errorf("components/ defines %d components, want %d", len(comps), len(want))
	}
	for name, typ := range want {
		t.Run(name, func(t *testing.T) {
			c, ok := comps[name]
			if !ok {
				t.Fatalf("components/ has no component %q", name)
			}
			if c.Spec.Type != typ {
				t.Errorf("type = %q, want %q", c.Spec.Type, typ)
			}
			got, wantScopes := slices.Sorted(slices.Values(c.Scopes)), slices.Sorted(slices.Values(Scopes[name]))
			if !slices.Equal(got, wantScopes) {
				t.Errorf("scopes = %v, want %v", got, wantScopes)
			}
		})
	}
}

// No component hard-codes an address: hosts, brokers and DSNs come from the secret store.
func TestAddressesComeFromSecretStore(t *testing.T) {
	t.Parallel()
	addressFields := map[string]bool{"brokers": true, "redisHost": true, "url": true, "connectionString": true}
	for name, c := range loadComponents(t) {
		for _, m := range c.Spec.Metadata {
			if !addressFields[m.Name] {
				continue
			}
			if m.SecretKeyRef == nil || m.Value != "" {
				t.Errorf("%s: %s is a literal value; use secretKeyRef", name, m.Name)
			}
			if c.Auth.SecretStore != Secrets {
				t.Errorf("%s: auth.secretStore = %q, want %q", name, c.Auth.SecretStore, Secrets)
			}
		}
	}
}

func TestActorStateStore(t *testing.T) {
	t.Parallel()
	c := loadComponents(t)[StateStore]
	for _, m := range c.Spec.Metadata {
		if m.Name == "actorStateStore" && m.Value == "true" {
			return
		}
	}
	t.Fatal("statestore is not the actor state store (actorStateStore: \"true\")")
}
