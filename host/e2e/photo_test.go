package e2e_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"sort"
	"sync"
	"testing"

	"github.com/nodecast/nodecast/host/internal/testclient"
	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/sendimage"
)

// photo is a generated photo-like RGB image and its PNG file.
type photo struct {
	Size  int
	Noise int // amplitude of the noise added to the gradients
	Pix   *sendimage.Pixels
	PNG   []byte // at sendimage.LevelFast, the level the senders use
}

var (
	photosMu sync.Mutex
	photos   = map[int]*photo{}
)

// largePNG is the size a 2048² photo's PNG must exceed: over 4 MiB, so that
// no sender can put it in one message a stock client accepts.
const largePNG = protocol.DefaultMessageLimit + 256<<10

// photoOf returns the size×size photo, made once per test binary. From
// 2048² up its PNG at the fast level is over largePNG: noise is added until
// it is.
func photoOf(t *testing.T, size int) *photo {
	t.Helper()
	photosMu.Lock()
	defer photosMu.Unlock()
	if p := photos[size]; p != nil {
		return p
	}
	enc, err := sendimage.NewEncoder("png", sendimage.EncoderOptions{Level: sendimage.LevelFast})
	if err != nil {
		t.Fatal(err)
	}
	var p *photo
	for noise := 2; ; noise += 2 {
		if noise > 64 {
			t.Fatalf("a %d² photo stays under %d bytes as PNG even with noise ±%d", size, largePNG, noise)
		}
		px := sendimage.NewPixels(size, size, 3)
		fillPhoto(px.Pix, size, uint64(size), noise)
		var buf bytes.Buffer
		if err := enc.Encode(&buf, px); err != nil {
			t.Fatal(err)
		}
		p = &photo{Size: size, Noise: noise, Pix: px, PNG: buf.Bytes()}
		if size < 2048 || buf.Len() > largePNG {
			break
		}
	}
	// The file must hold exactly these pixels, or comparing with them
	// would prove nothing.
	checkPNG(t, p.PNG, p)
	photos[size] = p
	return p
}

// fillPhoto writes a size×size RGB image: smooth gradients and waves, as a
// photo's large areas are, plus deterministic noise of ±noise, as its
// texture and sensor noise are.
//
//go:norace
func fillPhoto(pix []byte, size int, seed uint64, noise int) {
	state := seed*0x9e3779b97f4a7c15 + 1
	span := uint64(2*noise + 1)
	i := 0
	for y := 0; y < size; y++ {
		fy := float64(y) / float64(size)
		for x := 0; x < size; x++ {
			fx := float64(x) / float64(size)
			base := [3]float64{
				40 + 170*fx + 20*math.Sin(6*fy),
				60 + 120*fy + 40*math.Sin(4*fx+3*fy),
				200 - 150*fx*fy + 25*math.Cos(5*fx),
			}
			for c := 0; c < 3; c++ {
				state ^= state << 13 // xorshift64
				state ^= state >> 7
				state ^= state << 17
				v := base[c] + float64(int64(state%span)-int64(noise))
				pix[i] = byte(min(255, max(0, v)))
				i++
			}
		}
	}
}

var (
	checkedMu sync.Mutex
	checked   = map[[sha256.Size]byte]*photo{} // PNG files whose pixels were compared with a photo
)

// checkPNG decodes data with image/png and compares every pixel with want.
// Bytes already checked against want are not decoded again: equal bytes
// decode to equal pixels.
func checkPNG(t *testing.T, data []byte, want *photo) {
	t.Helper()
	sum := sha256.Sum256(data)
	checkedMu.Lock()
	done := checked[sum] == want
	checkedMu.Unlock()
	if done {
		return
	}
	m, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("received image does not decode as PNG: %v", err)
	}
	if got := m.Bounds(); got != image.Rect(0, 0, want.Size, want.Size) {
		t.Fatalf("received image is %v, want %d×%d", got, want.Size, want.Size)
	}
	var pix []byte
	var stride int
	switch m := m.(type) {
	case *image.RGBA:
		pix, stride = m.Pix, m.Stride
	case *image.NRGBA:
		pix, stride = m.Pix, m.Stride
	default:
		t.Fatalf("received image decodes to %T, want RGB", m)
	}
	if at := firstPixelDiff(pix, stride, want.Pix); at >= 0 {
		x, y := at%want.Size, at/want.Size
		t.Fatalf("received image differs from the uploaded one at pixel (%d,%d): got %v, want %v",
			x, y, pix[y*stride+4*x:y*stride+4*x+4], want.Pix.Pix[3*at:3*at+3])
	}
	checkedMu.Lock()
	checked[sum] = want
	checkedMu.Unlock()
}

// firstPixelDiff compares 4-channel opaque pixels with RGB pixels and returns
// the index of the first pixel that differs, or -1.
//
//go:norace
func firstPixelDiff(pix []byte, stride int, want *sendimage.Pixels) int {
	for y := 0; y < want.H; y++ {
		row := pix[y*stride : y*stride+4*want.W]
		w := want.Pix[y*3*want.W : (y+1)*3*want.W]
		for x := 0; x < want.W; x++ {
			if row[4*x] != w[3*x] || row[4*x+1] != w[3*x+1] || row[4*x+2] != w[3*x+2] || row[4*x+3] != 0xff {
				return y*want.W + x
			}
		}
	}
	return -1
}

// b64Image is one image joined from base64 JSON parts.
type b64Image struct {
	Label string
	Index int
	Data  []byte
	Parts int
	Meta  protocol.B64PartData // the last part's fields, part_b64 left out
}

// joinB64Parts does what the ntlb64part client does with messages of type
// event: it files each part_b64 under nodelabel, img_idx and part_idx,
// checks that the part numbers are continuous, joins the strings in order and
// decodes them. It also checks nodecast's integrity fields (part_count, size,
// sha256), as the Python client in examples/python does.
func joinB64Parts(t *testing.T, msgs []testclient.Received, event string) []b64Image {
	t.Helper()
	type key struct {
		label string
		idx   int
	}
	parts := map[key]map[int]string{}
	meta := map[key]protocol.B64PartData{}
	for _, r := range msgs {
		if r.Kind != testclient.JSON || r.Type != event {
			continue
		}
		var d protocol.B64PartData
		if err := json.Unmarshal(r.Data, &d); err != nil {
			t.Fatalf("%s message: %v", event, err)
		}
		k := key{d.NodeLabel, d.ImgIdx}
		if parts[k] == nil {
			parts[k] = map[int]string{}
		}
		if _, dup := parts[k][d.PartIdx]; dup {
			t.Fatalf("%s: image %d part %d received twice", event, d.ImgIdx, d.PartIdx)
		}
		parts[k][d.PartIdx] = d.PartB64
		d.PartB64 = ""
		meta[k] = d
	}
	var out []b64Image
	for k, ps := range parts {
		idx := make([]int, 0, len(ps))
		for i := range ps {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		var joined bytes.Buffer
		for n, i := range idx {
			if i != n {
				t.Fatalf("%s: image %d: part numbers %v are not continuous", event, k.idx, idx)
			}
			joined.WriteString(ps[i])
		}
		data, err := base64.StdEncoding.DecodeString(joined.String())
		if err != nil {
			t.Fatalf("%s: image %d: joined part_b64 does not decode: %v", event, k.idx, err)
		}
		m := meta[k]
		sum := sha256.Sum256(data)
		if m.PartCount != len(idx) || m.Size != int64(len(data)) || m.SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("%s: image %d: %d parts, %d bytes; its messages say part_count %d, size %d, sha256 %s",
				event, k.idx, len(idx), len(data), m.PartCount, m.Size, m.SHA256)
		}
		out = append(out, b64Image{Label: k.label, Index: k.idx, Data: data, Parts: len(idx), Meta: m})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Label != out[j].Label {
			return out[i].Label < out[j].Label
		}
		return out[i].Index < out[j].Index
	})
	return out
}

// wantIndexes formats 0..n-1 as fmt prints a sorted []int of batch indexes.
func wantIndexes(n int) string {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return fmt.Sprint(s)
}
