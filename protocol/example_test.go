package protocol_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log"

	"github.com/nodecast/nodecast/protocol"
)

// A sender cuts an encoded image into parts whose messages all stay under the
// client's limit, in either wire shape.
func ExampleSplitter() {
	image := bytes.Repeat([]byte("encoded image bytes "), 500) // 10,000 bytes
	h := protocol.PartHeader{Event: "nodecast.image", PromptID: "p1", Node: "9",
		ImageID: "p1-9-0", Index: 0, Batch: 1, MIME: "image/png"}

	s := protocol.Splitter{Limit: 4096}
	parts, err := s.Split(h, "9", image, protocol.WireParts)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range parts {
		frame, _ := protocol.AppendPartFrame(nil, &p.PartHeader, p.Data)
		b64, _ := protocol.MarshalB64Part(&p)
		fmt.Printf("part %d of %d: %d bytes at %d; PART frame %d, base64 message %d bytes\n",
			p.Part, p.Parts, len(p.Data), p.Offset, len(frame), len(b64))
	}

	// Asking for parts that would not fit is refused, naming the largest that does.
	_, err = protocol.Splitter{Limit: 4096, PartSize: 4000}.Split(h, "9", image, protocol.WireParts)
	fmt.Println(err)
	// Output:
	// part 0 of 4: 2856 bytes at 0; PART frame 3096, base64 message 4089 bytes
	// part 1 of 4: 2856 bytes at 2856; PART frame 3099, base64 message 4092 bytes
	// part 2 of 4: 2856 bytes at 5712; PART frame 3099, base64 message 4092 bytes
	// part 3 of 4: 1432 bytes at 8568; PART frame 1675, base64 message 2196 bytes
	// protocol: part size 4000 exceeds limit 2856
}

// A client joins parts that arrive in any order, mixed with other images, and
// asks at the end of the prompt which images never completed.
func ExampleReassembler() {
	image := bytes.Repeat([]byte{0x89, 'P', 'N', 'G'}, 2500)
	h := protocol.PartHeader{Event: "nodecast.image", PromptID: "p1", Node: "9",
		ImageID: "p1-9-0", Batch: 2, MIME: "image/png"}
	parts, err := protocol.Splitter{PartSize: 3000}.Split(h, "", image, protocol.WireParts)
	if err != nil {
		log.Fatal(err)
	}
	h.ImageID, h.Index = "p1-9-1", 1
	lost, _ := protocol.Splitter{PartSize: 3000}.Split(h, "", image, protocol.WireParts)

	r := protocol.NewReassembler(protocol.ReassemblerOptions{})
	for i := len(parts) - 1; i >= 0; i-- { // last part first
		frame, _ := protocol.AppendPartFrame(nil, &parts[i].PartHeader, parts[i].Data)
		img, err := r.AddFrame(frame)
		if err != nil {
			log.Fatal(err)
		}
		if img != nil {
			fmt.Printf("image %s: %d bytes, %s, intact: %v\n", img.ImageID, img.Size, img.MIME, bytes.Equal(img.Data, image))
		}
		// A part of the second image arrives, as a base64 JSON message.
		if i == 1 {
			msg, _ := protocol.MarshalB64Part(&lost[0])
			var m protocol.RawMessage
			if err := json.Unmarshal(msg, &m); err != nil {
				log.Fatal(err)
			}
			if _, err := r.AddB64(m.Type, m.Data); err != nil {
				log.Fatal(err)
			}
		}
	}
	// "executing" with node null: the prompt is over.
	for _, p := range r.Flush("p1") {
		fmt.Println(p.Err())
	}
	// Output:
	// image p1-9-0: 10000 bytes, image/png, intact: true
	// protocol: image "p1-9-1" of prompt "p1", part 1: incomplete: missing 3 of 4 parts (1, 2, 3); received 3000 of 10000 bytes
}
