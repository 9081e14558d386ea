package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"unicode/utf8"
)

// shorten returns msg, a JSON {"type","data"} message, cut to at most max
// bytes: the longest strings lose their tails (each ends with
// "...[truncated N bytes]"), then the longest arrays their last elements, and
// data gets "truncated": true, so that a client sees what happened instead
// of losing the message (an execution_error with a huge traceback still
// says which node failed). If nothing else fits, data keeps only its short
// fields.
func shorten(msg []byte, max int) ([]byte, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if data, ok := m["data"].(map[string]any); ok {
		data["truncated"] = true
	} else {
		m["truncated"] = true
	}
	out, err := marshalPlain(m)
	for round := 0; err == nil && len(out) > max && round < 64; round++ {
		over := len(out) - max
		if !cutLongestString(m, over) && !cutLongestArray(m, over) {
			break
		}
		out, err = marshalPlain(m)
	}
	if err != nil {
		return nil, err
	}
	if len(out) > max { // deep structure of small values: keep the short top-level fields
		if data, ok := m["data"].(map[string]any); ok {
			for k, v := range data {
				if j, _ := marshalPlain(v); len(j) > 256 {
					delete(data, k)
				}
			}
		} else {
			delete(m, "data")
		}
		if out, err = marshalPlain(m); err != nil {
			return nil, err
		}
	}
	if len(out) > max {
		return nil, errors.New("message does not fit in " + strconv.Itoa(max) + " bytes even without its data")
	}
	return out, nil
}

func marshalPlain(v any) ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// leaf is a value inside the message with a way to replace it.
type leaf struct {
	size int
	set  func(any)
	v    any
}

// walk lists the strings and arrays of v.
func walk(v any, set func(any), out *[]leaf) {
	switch x := v.(type) {
	case string:
		*out = append(*out, leaf{size: len(x), set: set, v: x})
	case []any:
		*out = append(*out, leaf{size: len(x), set: set, v: x})
		for i := range x {
			walk(x[i], func(n any) { x[i] = n }, out)
		}
	case map[string]any:
		for k := range x {
			walk(x[k], func(n any) { x[k] = n }, out)
		}
	}
}

func leaves(m map[string]any, keep func(leaf) bool) []leaf {
	var all, out []leaf
	walk(m, nil, &all)
	for _, l := range all {
		if l.set != nil && keep(l) {
			out = append(out, l)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].size > out[j].size })
	return out
}

// cutLongestString shortens the longest string by over bytes and a margin.
func cutLongestString(m map[string]any, over int) bool {
	ls := leaves(m, func(l leaf) bool { _, ok := l.v.(string); return ok && l.size > 64 })
	if len(ls) == 0 {
		return false
	}
	s := ls[0].v.(string)
	// JSON escaping can make a string longer on the wire than in memory;
	// cutting a little more than over saves rounds.
	keep := max(0, len(s)-over-over/8-64)
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	ls[0].set(s[:keep] + "...[truncated " + strconv.Itoa(len(s)-keep) + " bytes]")
	return true
}

// cutLongestArray halves the longest array.
func cutLongestArray(m map[string]any, over int) bool {
	ls := leaves(m, func(l leaf) bool { _, ok := l.v.([]any); return ok && l.size > 1 })
	if len(ls) == 0 {
		return false
	}
	a := ls[0].v.([]any)
	ls[0].set(append(a[:len(a)/2:len(a)/2], "...[truncated "+strconv.Itoa(len(a)-len(a)/2)+" elements]"))
	return true
}
