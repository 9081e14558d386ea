package executor

// DefaultSensitiveKeys are the extra_data keys ComfyUI takes out of a
// prompt before it queues it (execution.py SENSITIVE_EXTRA_DATA_KEYS,
// popped in server.py post_prompt): they reach the nodes that declare them
// as hidden inputs, never /queue, /history, /api/jobs, logs or metrics.
var DefaultSensitiveKeys = []string{"auth_token_comfy_org", "api_key_comfy_org"}

// splitSensitive moves the sensitive keys out of extra into a map of their
// own; nil when the request had none.
func splitSensitive(extra map[string]any, keys []string) map[string]any {
	var secrets map[string]any
	for _, k := range keys {
		v, ok := extra[k]
		if !ok {
			continue
		}
		if secrets == nil {
			secrets = map[string]any{}
		}
		secrets[k] = v
		delete(extra, k)
	}
	return secrets
}

// sensitiveKeys is DefaultSensitiveKeys plus the ones the options add.
func (o *Options) sensitiveKeys() []string {
	return append(append([]string{}, DefaultSensitiveKeys...), o.SensitiveKeys...)
}
