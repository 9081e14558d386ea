package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
)

// PromptError is the host's refusal of a prompt (ComfyUI's 400 answer with
// error and node_errors).
type PromptError struct {
	Status int
	Body   string // the answer as sent
}

func (e *PromptError) Error() string {
	return fmt.Sprintf("client: POST /prompt: HTTP %d: %.500s", e.Status, e.Body)
}

// QueuePrompt queues prompt (ComfyUI's API format: node id -> class_type
// and inputs, as a map, a struct or json.RawMessage) for this client and
// returns its prompt_id. Its messages and images arrive on Events.
func (c *Client) QueuePrompt(ctx context.Context, prompt any) (string, error) {
	return c.queue(ctx, map[string]any{"prompt": prompt, "client_id": c.opts.ClientID})
}

// QueueWorkflow queues a workflow configured on the host by name.
func (c *Client) QueueWorkflow(ctx context.Context, name string) (string, error) {
	return c.queue(ctx, map[string]any{"workflow": name, "client_id": c.opts.ClientID})
}

func (c *Client) queue(ctx context.Context, body map[string]any) (string, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return "", fmt.Errorf("client: prompt: %w", err)
	}
	reply, status, err := c.do(ctx, "/prompt", "application/json", bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	var ok struct {
		PromptID string `json:"prompt_id"`
	}
	if status != http.StatusOK || json.Unmarshal(reply, &ok) != nil || ok.PromptID == "" {
		return "", &PromptError{Status: status, Body: string(reply)}
	}
	return ok.PromptID, nil
}

// Uploaded is the host's answer to an upload: the name LoadImage reads it by.
type Uploaded struct {
	Name      string `json:"name"`
	Subfolder string `json:"subfolder"`
	Type      string `json:"type"`
}

// Upload sends an image to POST /upload/image (ComfyUI's form: field
// "image", type input), overwriting a file of the same name.
func (c *Client) Upload(ctx context.Context, name string, image io.Reader) (Uploaded, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("image", name)
	if err != nil {
		return Uploaded{}, err
	}
	if _, err := io.Copy(fw, image); err != nil {
		return Uploaded{}, fmt.Errorf("client: upload %s: %w", name, err)
	}
	mw.WriteField("type", "input")
	mw.WriteField("overwrite", "true")
	mw.Close()
	reply, status, err := c.do(ctx, "/upload/image", mw.FormDataContentType(), &body)
	if err != nil {
		return Uploaded{}, err
	}
	var up Uploaded
	if status != http.StatusOK || json.Unmarshal(reply, &up) != nil || up.Name == "" {
		return Uploaded{}, fmt.Errorf("client: upload %s: HTTP %d: %.500s", name, status, reply)
	}
	return up, nil
}

// do posts body to path and returns the answer (at most 16 MiB of it).
func (c *Client) do(ctx context.Context, path, contentType string, body io.Reader) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+path, body)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", contentType)
	if c.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("client: POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("client: POST %s: %w", path, err)
	}
	return reply, resp.StatusCode, nil
}
