package testclient

import (
	"encoding/json"
	"fmt"

	"github.com/nodecast/nodecast/protocol"
)

// MessageKind is the wire shape of one received WebSocket message.
type MessageKind int

const (
	JSON    MessageKind = iota // a JSON text message
	Whole                      // a type 1 binary frame: one whole image
	PART                       // a PART binary frame
	Text                       // a type 3 TEXT frame: a node's progress text
	Preview                    // a type 4 frame: an image with ComfyUI's metadata
)

// Received is one WebSocket message as the client received it.
type Received struct {
	Kind   MessageKind
	Size   int                      // bytes of the message
	Type   string                   // JSON: the message type
	Data   json.RawMessage          // JSON: the message data
	Format uint32                   // Whole: the image format code
	Meta   protocol.PreviewMetadata // Preview: the frame's metadata
	Image  []byte                   // Whole and Preview: the image bytes
	Part   protocol.PartHeader      // PART: the frame's header
	Node   string                   // Text: the node the text is from
	Text   string                   // Text: the progress text
	Frame  []byte                   // Text: the frame as it came, for byte-exact checks
	// Done is the image this message completed (a PART frame, or a base64
	// JSON part), or nil.
	Done *protocol.Image
}

// Field decodes one field of a JSON message's data; nil when absent.
func (r Received) Field(name string) any {
	var m map[string]any
	if json.Unmarshal(r.Data, &m) != nil {
		return nil
	}
	return m[name]
}

// IsJSON reports whether r is a JSON message of type typ for promptID.
func (r Received) IsJSON(typ, promptID string) bool {
	return r.Kind == JSON && r.Type == typ && r.Field("prompt_id") == promptID
}

// IsPromptEnd reports whether r is ComfyUI's end of prompt promptID:
// executing with node null.
func (r Received) IsPromptEnd(promptID string) bool {
	if !r.IsJSON(protocol.TypeExecuting, promptID) {
		return false
	}
	var d map[string]any
	_ = json.Unmarshal(r.Data, &d)
	node, has := d["node"]
	return has && node == nil
}

func (r Received) String() string {
	switch r.Kind {
	case Whole:
		return fmt.Sprintf("type1(format %d, %d bytes)", r.Format, len(r.Image))
	case PART:
		return fmt.Sprintf("PART(%s img %d part %d/%d)", r.Part.Event, r.Part.Index, r.Part.Part, r.Part.Parts)
	case Text:
		return fmt.Sprintf("type3(node %s, %d bytes)", r.Node, len(r.Text))
	case Preview:
		return fmt.Sprintf("type4(node %s, %s, %d bytes)", r.Meta.NodeID, r.Meta.ImageType, len(r.Image))
	}
	d := string(r.Data)
	if len(d) > 160 {
		d = d[:160] + "..."
	}
	return r.Type + " " + d
}
