package protocol

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateEventName(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reason string // "" means valid
	}{
		{"ntlb64part", ""},
		{"nodecast.image:v1-final_2", ""},
		{strings.Repeat("a", 64), ""},
		{"", "empty"},
		{strings.Repeat("a", 65), "length 65 exceeds limit 64"},
		{strings.Repeat("é", 33), "length 66 exceeds limit 64"},
		{"status", "is a ComfyUI message type"},
		{"executing", "is a ComfyUI message type"},
		{"execution_error", "is a ComfyUI message type"},
		{"feature_flags", "is a ComfyUI message type"},
		{"has space", "character ' ' at byte 3 is not in [A-Za-z0-9_.:-]"},
		{"slash/", "character '/' at byte 5"},
		{"quote\"", "character '\"' at byte 5"},
		{"caf\u00e9", "character 'é' at byte 3"},
		{"nul\x00", `character '\x00' at byte 3`},
		{"bad\xff", "invalid UTF-8 byte 0xff at byte 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateEventName(tc.name)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ee *EventNameError
			if !errors.As(err, &ee) || !errors.Is(err, ErrEventName) {
				t.Fatalf("got %v; want an *EventNameError", err)
			}
			if ee.Name != tc.name || !strings.Contains(ee.Reason, tc.reason) {
				t.Fatalf("got %+v; want reason %q", ee, tc.reason)
			}
		})
	}
}

func TestReservedTypes(t *testing.T) {
	for _, typ := range []string{TypeStatus, TypeProgress, TypeProgressState, TypeExecuting, TypeExecuted,
		TypeExecutionStart, TypeExecutionCached, TypeExecutionSuccess, TypeExecutionError,
		TypeExecutionInterrupted, TypeFeatureFlags} {
		if !IsReservedType(typ) || ValidateEventName(typ) == nil {
			t.Errorf("%q is not refused", typ)
		}
	}
	if IsReservedType("ntlb64part") {
		t.Error("ntlb64part is reserved")
	}
}
