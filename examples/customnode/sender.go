package main

import (
	"context"
	"errors"

	"github.com/nodecast/nodecast/plugins"
	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

// ClassType is the sender's class_type in prompts.
const ClassType = "Custom_SendImageQOI"

// DefaultEvent is the event name the images carry when the prompt sets none
// (and the host has no default event of its own).
const DefaultEvent = "qoi_image"

// maxPartSize bounds the part_size input; 0 picks the largest part that fits
// one WebSocket message.
const maxPartSize = 1 << 30

// sendImageQOI encodes each image of a batch as QOI and sends it to the
// prompt's client: as PART frames to clients that sent supports_image_parts,
// as base64 JSON parts to the others (QOI has no type 1 format code).
type sendImageQOI struct{}

func (sendImageQOI) Spec() plugins.Spec {
	return plugins.Spec{
		ClassType:   ClassType,
		DisplayName: "Send Image as QOI (WebSocket)",
		Category:    "image/websocket",
		Description: "Encodes each image as QOI (image/qoi) and sends it to the prompt's client under an event name, split into parts that fit one WebSocket message.",
		OutputNode:  true,
		Inputs: []plugins.Input{
			{Name: "images", Type: plugins.TypeImage, Options: map[string]any{
				"tooltip": "The images to send; each image of the batch is sent on its own.",
			}},
			{Name: "event", Type: plugins.TypeString, Options: map[string]any{
				"default": DefaultEvent, "multiline": false,
				"tooltip": "Event name clients listen for: [A-Za-z0-9_.:-]{1,64}, not a ComfyUI message type.",
			}},
			{Name: "part_size", Type: plugins.TypeInt, Options: map[string]any{
				"default": int64(0), "min": int64(0), "max": int64(maxPartSize), "step": int64(1),
				"tooltip": "Bytes of image per part; 0 is the largest that fits one message.",
			}},
		},
	}
}

func (sendImageQOI) Run(ctx context.Context, call *plugins.Call) (plugins.Result, error) {
	images, err := call.Tensor("images")
	if err != nil {
		return plugins.Result{}, err
	}
	event, err := call.String("event", DefaultEvent)
	if err != nil {
		return plugins.Result{}, err
	}
	partSize, err := call.Int("part_size", 0)
	if err != nil {
		return plugins.Result{}, err
	}
	if partSize < 0 || partSize > maxPartSize {
		return plugins.Result{}, &plugins.InputError{Node: call.NodeID, Input: "part_size",
			Reason: "want 0 (largest that fits) up to 1073741824"}
	}
	if call.Emitter == nil {
		return plugins.Result{}, errors.New("customnode: the call has no Emitter to send images through")
	}
	// sendimage.Send checks the event name, the tensor and the part size
	// before it emits anything, then converts, encodes, splits and emits.
	sent, err := sendimage.Send(ctx, images, sendimage.SendOptions{
		Event:        event,
		Encoder:      "qoi", // found in sendimage.Default, where init put it
		Wire:         protocol.WireParts,
		PartSize:     int(partSize),
		MessageLimit: call.Limits.MessageLimit,
		Limits:       call.Limits.Image,
		PromptID:     call.PromptID,
		Node:         call.NodeID,
	}, call.Emitter)
	if err != nil {
		return plugins.Result{}, err
	}
	// The "ui" output lets a client match what "executed" reports to the
	// images it reassembled, by index and checksum.
	list := make([]any, len(sent))
	for i, s := range sent {
		list[i] = map[string]any{
			"source": "websocket", "type": "output", "content-type": s.MIME, "event": event,
			"image_id": s.ImageID, "sha256": s.SHA256, "size": s.Size, "width": s.Width, "height": s.Height,
		}
	}
	return plugins.Result{UI: map[string]any{"images": list}}, nil
}
