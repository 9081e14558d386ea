package plugins

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/nodecast/nodecast/protocol"
	"github.com/nodecast/nodecast/protocol/pluginpb"
)

// errTensorValue is returned by encodeValue for tensors, which the caller must
// store or put first and pass by reference.
var errTensorValue = errors.New("a tensor must be passed by reference")

// encodeValue encodes a scalar as itself and anything else as JSON. Tensors are
// refused: each side turns them into references its own way.
func encodeValue(v any) (*pluginpb.Value, error) {
	switch x := v.(type) {
	case nil:
		return &pluginpb.Value{}, nil
	case string:
		return &pluginpb.Value{Kind: &pluginpb.Value_StringValue{StringValue: x}}, nil
	case bool:
		return &pluginpb.Value{Kind: &pluginpb.Value_BoolValue{BoolValue: x}}, nil
	case int:
		return intValue(int64(x)), nil
	case int8:
		return intValue(int64(x)), nil
	case int16:
		return intValue(int64(x)), nil
	case int32:
		return intValue(int64(x)), nil
	case int64:
		return intValue(x), nil
	case uint8:
		return intValue(int64(x)), nil
	case uint16:
		return intValue(int64(x)), nil
	case uint32:
		return intValue(int64(x)), nil
	case uint:
		return uintValue(uint64(x))
	case uint64:
		return uintValue(x)
	case float32:
		return floatValue(float64(x))
	case float64:
		return floatValue(x)
	case json.RawMessage:
		if !json.Valid(x) {
			return nil, errors.New("json.RawMessage is not valid JSON")
		}
		return &pluginpb.Value{Kind: &pluginpb.Value_JsonValue{JsonValue: x}}, nil
	case *protocol.Tensor, protocol.Tensor, []*protocol.Tensor, TensorRef, *TensorRef:
		return nil, errTensorValue
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%T does not encode as JSON: %w", v, err)
	}
	return &pluginpb.Value{Kind: &pluginpb.Value_JsonValue{JsonValue: j}}, nil
}

func intValue(n int64) *pluginpb.Value {
	return &pluginpb.Value{Kind: &pluginpb.Value_IntValue{IntValue: n}}
}

func uintValue(n uint64) (*pluginpb.Value, error) {
	if n > math.MaxInt64 {
		return nil, fmt.Errorf("integer %d does not fit int64", n)
	}
	return intValue(int64(n)), nil
}

func floatValue(f float64) (*pluginpb.Value, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		// ComfyUI's JSON cannot carry them either.
		return nil, fmt.Errorf("number %v is not finite", f)
	}
	return &pluginpb.Value{Kind: &pluginpb.Value_FloatValue{FloatValue: f}}, nil
}

// decodeValue turns a wire value into a Go value: string, int64, float64, bool,
// a decoded JSON value, or nil; tensor references go through tensor.
func decodeValue(v *pluginpb.Value, tensor func(*pluginpb.TensorRef) (any, error)) (any, error) {
	switch k := v.GetKind().(type) {
	case nil:
		return nil, nil
	case *pluginpb.Value_StringValue:
		return k.StringValue, nil
	case *pluginpb.Value_IntValue:
		return k.IntValue, nil
	case *pluginpb.Value_FloatValue:
		return k.FloatValue, nil
	case *pluginpb.Value_BoolValue:
		return k.BoolValue, nil
	case *pluginpb.Value_Tensor:
		return tensor(k.Tensor)
	case *pluginpb.Value_JsonValue:
		var x any
		if err := json.Unmarshal(k.JsonValue, &x); err != nil {
			return nil, fmt.Errorf("bad JSON value: %w", err)
		}
		return x, nil
	}
	return nil, fmt.Errorf("unknown value kind %T", v.GetKind())
}
