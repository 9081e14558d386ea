package protocol

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestTensorValidate(t *testing.T) {
	huge := math.MaxInt / 2
	for _, tc := range []struct {
		name   string
		t      *Tensor
		reason string // substring of the error; "" means valid
		dtype  bool   // want a *DTypeError rather than a *ShapeError
	}{
		{"float32 image", NewFloat32(2, 3, 4, 3), "", false},
		{"uint8 mask", FromUint8(make([]byte, 12), 1, 3, 4), "", false},
		{"data too short", &Tensor{DType: Float32, Shape: []int{1, 2, 2, 3}, Data: make([]byte, 47)}, "data is 47 bytes, shape needs 48", false},
		{"data too long", &Tensor{DType: Uint8, Shape: []int{1, 2, 2, 3}, Data: make([]byte, 13)}, "data is 13 bytes, shape needs 12", false},
		{"zero dimension", &Tensor{DType: Float32, Shape: []int{1, 0, 2, 3}}, "every dimension must be at least 1", false},
		{"negative dimension", &Tensor{DType: Float32, Shape: []int{1, -2, 2, 3}}, "every dimension must be at least 1", false},
		{"no dimensions", &Tensor{DType: Float32}, "no dimensions", false},
		{"product overflow", &Tensor{DType: Float32, Shape: []int{huge, huge, 3}}, "element count exceeds limit " + strconv.FormatUint(maxElements, 10), false},
		{"product over limit", &Tensor{DType: Uint8, Shape: []int{1 << 24, 1 << 24}}, "element count exceeds limit", false},
		{"unknown dtype", &Tensor{DType: "float16", Shape: []int{1}, Data: make([]byte, 2)}, `unknown dtype "float16"`, true},
		{"empty dtype", &Tensor{Shape: []int{1}}, `unknown dtype ""`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.t.Validate()
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if tc.dtype {
				var de *DTypeError
				if !errors.As(err, &de) || !errors.Is(err, ErrDType) {
					t.Fatalf("got %v; want a *DTypeError", err)
				}
			} else {
				var se *ShapeError
				if !errors.As(err, &se) || !errors.Is(err, ErrShape) {
					t.Fatalf("got %v; want a *ShapeError", err)
				}
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %q does not say %q", err, tc.reason)
			}
		})
	}
}

func TestTensorImageDims(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shape  []int
		lim    ImageLimits
		reason string
		limit  *LimitError
	}{
		{"rgb", []int{2, 8, 16, 3}, ImageLimits{}, "", nil},
		{"rgba", []int{1, 8, 16, 4}, ImageLimits{}, "", nil},
		{"grey", []int{1, 8, 16, 1}, ImageLimits{}, "", nil},
		{"2 channels", []int{1, 8, 16, 2}, ImageLimits{}, "channels must be 1, 3 or 4, got 2", nil},
		{"5 channels", []int{1, 8, 16, 5}, ImageLimits{}, "channels must be 1, 3 or 4, got 5", nil},
		{"rank 3", []int{8, 16, 3}, ImageLimits{}, "IMAGE must be [batch,height,width,channels]", nil},
		{"width over side", []int{1, 1, 16385, 1}, ImageLimits{}, "image width 16385 exceeds limit 16384",
			&LimitError{What: "image width", Value: 16385, Limit: 16384}},
		{"height over side", []int{1, 16385, 1, 1}, ImageLimits{}, "image height 16385 exceeds limit 16384",
			&LimitError{What: "image height", Value: 16385, Limit: 16384}},
		{"side at limit", []int{1, 1, 16384, 1}, ImageLimits{}, "", nil},
		{"custom side", []int{1, 10, 11, 3}, ImageLimits{MaxSide: 10}, "image width 11 exceeds limit 10",
			&LimitError{What: "image width", Value: 11, Limit: 10}},
		{"side disabled", []int{1, 1, 20000, 1}, ImageLimits{MaxSide: -1}, "", nil},
		{"custom pixels", []int{1, 10, 11, 3}, ImageLimits{MaxPixels: 109}, "image pixels 110 exceeds limit 109",
			&LimitError{What: "image pixels", Value: 110, Limit: 109}},
		{"pixels at custom limit", []int{1, 10, 11, 3}, ImageLimits{MaxPixels: 110}, "", nil},
		{"pixels disabled", []int{1, 10, 11, 3}, ImageLimits{MaxSide: 5, MaxPixels: -1}, "image width 11 exceeds limit 5",
			&LimitError{What: "image width", Value: 11, Limit: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 1
			for _, d := range tc.shape {
				n *= d
			}
			tt := FromUint8(make([]byte, n), tc.shape...)
			b, h, w, c, err := tt.ImageDims(tc.lim)
			checkDimsError(t, err, tc.reason, tc.limit)
			if err == nil && (b != tc.shape[0] || h != tc.shape[1] || w != tc.shape[2] || c != tc.shape[3]) {
				t.Fatalf("ImageDims = %d %d %d %d", b, h, w, c)
			}
		})
	}
}

// TestImageLimitsDefaultPixels checks Pillow's pixel limit without
// allocating a 89-megapixel tensor.
func TestImageLimitsDefaultPixels(t *testing.T) {
	for _, tc := range []struct {
		w, h  int
		lim   ImageLimits
		limit *LimitError
	}{
		{9459, 9459, ImageLimits{}, nil}, // 89,472,681
		{9460, 9459, ImageLimits{}, &LimitError{What: "image pixels", Value: 89_482_140, Limit: DefaultMaxPixels}}, // 89,482,140
		{9460, 9459, ImageLimits{MaxPixels: -1}, nil},
		{16384, 16384, ImageLimits{MaxPixels: 1 << 28}, nil},
		{16384, 16384, ImageLimits{MaxPixels: 1<<28 - 1}, &LimitError{What: "image pixels", Value: 1 << 28, Limit: 1<<28 - 1}},
	} {
		err := tc.lim.CheckSize(tc.w, tc.h)
		reason := ""
		if tc.limit != nil {
			reason = strconv.FormatInt(tc.limit.Value, 10) + " exceeds limit " + strconv.FormatInt(tc.limit.Limit, 10)
		}
		checkDimsError(t, err, reason, tc.limit)
	}
}

func TestTensorMaskDims(t *testing.T) {
	m := FromUint8(make([]byte, 6), 1, 2, 3)
	if b, h, w, err := m.MaskDims(ImageLimits{}); err != nil || b != 1 || h != 2 || w != 3 {
		t.Fatalf("MaskDims = %d %d %d %v", b, h, w, err)
	}
	_, _, _, err := FromUint8(make([]byte, 6), 1, 2, 3, 1).MaskDims(ImageLimits{})
	checkDimsError(t, err, "MASK must be [batch,height,width]", nil)
	_, _, _, err = FromUint8(make([]byte, 6), 1, 2, 3).MaskDims(ImageLimits{MaxSide: 2})
	checkDimsError(t, err, "image width 3 exceeds limit 2", &LimitError{What: "image width", Value: 3, Limit: 2})
	_, _, _, err = FromUint8(make([]byte, 5), 1, 2, 3).MaskDims(ImageLimits{})
	checkDimsError(t, err, "data is 5 bytes, shape needs 6", nil)
}

func checkDimsError(t *testing.T, err error, reason string, limit *LimitError) {
	t.Helper()
	if reason == "" {
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), reason) {
		t.Fatalf("got %v; want an error saying %q", err, reason)
	}
	if limit != nil {
		var le *LimitError
		if !errors.As(err, &le) || *le != *limit || !errors.Is(err, ErrLimit) {
			t.Fatalf("got %v; want %+v", err, limit)
		}
	} else {
		var se *ShapeError
		if !errors.As(err, &se) {
			t.Fatalf("got %v; want a *ShapeError", err)
		}
	}
}

func TestTensorCheckFinite(t *testing.T) {
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name  string
		v     []float32
		index int // -1 means all finite
	}{
		{"finite", []float32{0, 0.5, 1, -3, math.MaxFloat32, math.SmallestNonzeroFloat32}, -1},
		{"NaN", []float32{0, 1, nan, 0}, 2},
		{"+Inf", []float32{float32(math.Inf(1)), 0}, 0},
		{"-Inf", []float32{0, 0, 0, float32(math.Inf(-1))}, 3},
		{"first of several", []float32{0, float32(math.Inf(-1)), nan}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := FromFloat32(tc.v, len(tc.v)).CheckFinite()
			if tc.index < 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ne *NonFiniteError
			if !errors.As(err, &ne) || !errors.Is(err, ErrNonFinite) || ne.Index != tc.index {
				t.Fatalf("got %v; want a *NonFiniteError at %d", err, tc.index)
			}
			want := tc.v[tc.index]
			if !(ne.Value == want || (want != want && ne.Value != ne.Value)) {
				t.Fatalf("value %v, want %v", ne.Value, want)
			}
			if !strings.Contains(err.Error(), "at element "+strconv.Itoa(tc.index)) {
				t.Fatalf("error %q does not name the element", err)
			}
		})
	}
	if err := FromUint8([]byte{255}, 1).CheckFinite(); err != nil {
		t.Fatalf("uint8: %v", err)
	}
}

// TestFloat32sUnaligned reads float32 data that does not start on a 4-byte
// boundary, as a tensor sliced out of a larger buffer may.
func TestFloat32sUnaligned(t *testing.T) {
	src := FromFloat32([]float32{1, 2.5, float32(math.Inf(1))}, 3)
	buf := make([]byte, len(src.Data)+1)
	copy(buf[1:], src.Data)
	tt := &Tensor{DType: Float32, Shape: []int{3}, Data: buf[1:]}
	got := tt.Float32s()
	if len(got) != 3 || got[0] != 1 || got[1] != 2.5 || !math.IsInf(float64(got[2]), 1) {
		t.Fatalf("Float32s = %v", got)
	}
	if err := tt.CheckFinite(); err == nil {
		t.Fatal("unaligned +Inf not found")
	}
	if (&Tensor{DType: Float32}).Float32s() != nil {
		t.Fatal("empty tensor")
	}
}
