package kubernetes

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The custom resources the chart renders, as small types of their own: the fields the
// chart may use, after the CRDs of Dapr 1.18 (dapr/dapr pkg/apis/*/v1alpha1), Strimzi
// (kafka.strimzi.io), KEDA (keda.sh/v1alpha1) and the Prometheus operator. They are
// decoded strictly: a field that is not here (a typo, a field of another version) fails.

// Dapr

type Component struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Type         string      `json:"type"`
		Version      string      `json:"version"`
		IgnoreErrors bool        `json:"ignoreErrors,omitempty"`
		InitTimeout  string      `json:"initTimeout,omitempty"`
		Metadata     []NameValue `json:"metadata"`
	} `json:"spec"`
	Auth *struct {
		SecretStore string `json:"secretStore"`
	} `json:"auth,omitempty"`
	Scopes []string `json:"scopes,omitempty"`
}

// NameValue is one metadata entry of a component: a value (always a string here), a
// secret reference or an environment variable reference.
type NameValue struct {
	Name         string        `json:"name"`
	Value        *string       `json:"value,omitempty"`
	SecretKeyRef *SecretKeyRef `json:"secretKeyRef,omitempty"`
	EnvRef       string        `json:"envRef,omitempty"`
}

type SecretKeyRef struct {
	Name string `json:"name"`
	Key  string `json:"key,omitempty"`
}

type Configuration struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Metric *struct {
			Enabled *bool `json:"enabled"`
		} `json:"metric,omitempty"`
		Features []struct {
			Name    string `json:"name"`
			Enabled *bool  `json:"enabled"`
		} `json:"features,omitempty"`
		NameResolution *struct {
			Component     string         `json:"component"`
			Version       string         `json:"version,omitempty"`
			Configuration map[string]any `json:"configuration,omitempty"`
		} `json:"nameResolution,omitempty"`
		MTLS *struct {
			Enabled *bool `json:"enabled"`
			// Required by Dapr 1.18's Configuration CRD whenever mtls is set.
			ControlPlaneTrustDomain string `json:"controlPlaneTrustDomain,omitempty"`
			SentryAddress           string `json:"sentryAddress,omitempty"`
		} `json:"mtls,omitempty"`
		AccessControl *AccessControl `json:"accessControl,omitempty"`
	} `json:"spec"`
}

type AccessControl struct {
	DefaultAction string      `json:"defaultAction,omitempty"`
	TrustDomain   string      `json:"trustDomain,omitempty"`
	Policies      []AppPolicy `json:"policies,omitempty"`
}

type AppPolicy struct {
	AppID         string `json:"appId"`
	DefaultAction string `json:"defaultAction,omitempty"`
	TrustDomain   string `json:"trustDomain,omitempty"`
	Namespace     string `json:"namespace,omitempty"`
	Operations    []struct {
		Name     string   `json:"name"`
		HTTPVerb []string `json:"httpVerb,omitempty"`
		Action   string   `json:"action"`
	} `json:"operations,omitempty"`
}

type Resiliency struct {
	APIVersion string                `json:"apiVersion"`
	Kind       string                `json:"kind"`
	Metadata   metav1.ObjectMeta     `json:"metadata"`
	Spec       ResiliencySpec[Retry] `json:"spec"`
	Scopes     []string              `json:"scopes,omitempty"`
}

type ResiliencySpec[R any] struct {
	Policies struct {
		Timeouts        map[string]string `json:"timeouts,omitempty"`
		Retries         map[string]R      `json:"retries,omitempty"`
		CircuitBreakers map[string]struct {
			MaxRequests int    `json:"maxRequests,omitempty"`
			Interval    string `json:"interval,omitempty"`
			Timeout     string `json:"timeout,omitempty"`
			Trip        string `json:"trip,omitempty"`
		} `json:"circuitBreakers,omitempty"`
	} `json:"policies"`
	Targets struct {
		Apps       map[string]PolicyNames `json:"apps,omitempty"`
		Actors     map[string]PolicyNames `json:"actors,omitempty"`
		Components map[string]struct {
			Inbound  *PolicyNames `json:"inbound,omitempty"`
			Outbound *PolicyNames `json:"outbound,omitempty"`
		} `json:"components,omitempty"`
	} `json:"targets"`
}

// Retry is Dapr 1.18's retry policy: it has no initialInterval (an exponential retry
// starts at a fixed 500 ms).
type Retry struct {
	Policy      string `json:"policy,omitempty"`
	Duration    string `json:"duration,omitempty"`
	MaxInterval string `json:"maxInterval,omitempty"`
	MaxRetries  *int   `json:"maxRetries,omitempty"`
	Matching    *struct {
		HTTPStatusCodes string `json:"httpStatusCodes,omitempty"`
		GRPCStatusCodes string `json:"gRPCStatusCodes,omitempty"`
	} `json:"matching,omitempty"`
}

type PolicyNames struct {
	Timeout                 string `json:"timeout,omitempty"`
	Retry                   string `json:"retry,omitempty"`
	CircuitBreaker          string `json:"circuitBreaker,omitempty"`
	CircuitBreakerScope     string `json:"circuitBreakerScope,omitempty"`
	CircuitBreakerCacheSize int    `json:"circuitBreakerCacheSize,omitempty"`
}

// Strimzi

type Kafka struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Kafka struct {
			Version         string `json:"version,omitempty"`
			MetadataVersion string `json:"metadataVersion,omitempty"`
			Listeners       []struct {
				Name string `json:"name"`
				Port int32  `json:"port"`
				Type string `json:"type"`
				TLS  bool   `json:"tls"`
			} `json:"listeners"`
			Config map[string]any `json:"config,omitempty"`
		} `json:"kafka"`
		EntityOperator *struct {
			TopicOperator *struct{} `json:"topicOperator,omitempty"`
			UserOperator  *struct{} `json:"userOperator,omitempty"`
		} `json:"entityOperator,omitempty"`
	} `json:"spec"`
}

type KafkaNodePool struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Replicas int32    `json:"replicas"`
		Roles    []string `json:"roles"`
		Storage  struct {
			Type    string `json:"type"`
			Volumes []struct {
				ID            int    `json:"id"`
				Type          string `json:"type"`
				Size          string `json:"size,omitempty"`
				Class         string `json:"class,omitempty"`
				DeleteClaim   *bool  `json:"deleteClaim,omitempty"`
				KraftMetadata string `json:"kraftMetadata,omitempty"`
			} `json:"volumes"`
		} `json:"storage"`
		Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	} `json:"spec"`
}

type KafkaTopic struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		TopicName  string         `json:"topicName,omitempty"`
		Partitions int32          `json:"partitions"`
		Replicas   int32          `json:"replicas"`
		Config     map[string]any `json:"config,omitempty"`
	} `json:"spec"`
}

// KEDA

type ScaledObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion,omitempty"`
			Kind       string `json:"kind,omitempty"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		Fallback        *struct {
			FailureThreshold int32 `json:"failureThreshold"`
			Replicas         int32 `json:"replicas"`
		} `json:"fallback,omitempty"`
		Advanced *struct {
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name,omitempty"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type       string                         `json:"type"`
			Name       string                         `json:"name,omitempty"`
			MetricType autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
			Metadata   map[string]string              `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// Prometheus operator

type PodMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path,omitempty"`
			Interval string `json:"interval,omitempty"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}
