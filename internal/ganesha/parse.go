package ganesha

import (
	"errors"
	"fmt"
	"reflect"
)

// Replies are parsed from godbus's generic decoding (structs as []any,
// arrays as typed slices), and only the leading fields this package needs
// are read, so that the statistics ganesha versions append or reorder do
// not matter. ganesha 4.3 answers
//
//	ShowExports()      → (tt) a(qs((sb)(sb)(sb)(sb)(sb)(sb)(sb)(sb))(tt))
//	DisplayExport(q)   → q s s s a(siyyiuuuuu)
//
// (2.x had a(qsbbbbbbbb(tt)) for ShowExports; that parses too).

var errReply = errors.New("unexpected D-Bus reply")

// parseShowExports reads the exports (ID and path) out of a ShowExports
// reply.
func parseShowExports(body []any) ([]ShownExport, error) {
	if len(body) < 2 {
		return nil, fmt.Errorf("%w to ShowExports: %d values, want at least 2", errReply, len(body))
	}
	list, ok := asSlice(body[1])
	if !ok {
		return nil, fmt.Errorf("%w to ShowExports: exports are a %T, not an array", errReply, body[1])
	}
	out := make([]ShownExport, 0, len(list))
	seen := make(map[uint16]bool, len(list))
	for i, item := range list {
		fields, ok := asSlice(item)
		if !ok || len(fields) < 2 {
			return nil, fmt.Errorf("%w to ShowExports: export %d is a %T, not a struct of id and path", errReply, i, item)
		}
		id, ok := fields[0].(uint16)
		if !ok {
			return nil, fmt.Errorf("%w to ShowExports: export %d has ID %T, not uint16", errReply, i, fields[0])
		}
		path, ok := fields[1].(string)
		if !ok {
			return nil, fmt.Errorf("%w to ShowExports: export %d has path %T, not string", errReply, id, fields[1])
		}
		if seen[id] {
			return nil, fmt.Errorf("%w to ShowExports: export ID %d listed twice", errReply, id)
		}
		seen[id] = true
		out = append(out, ShownExport{ID: id, Path: path})
	}
	return out, nil
}

// parseDisplayExport reads a DisplayExport reply.
func parseDisplayExport(body []any) (ExportDetails, error) {
	var d ExportDetails
	if len(body) < 5 {
		return d, fmt.Errorf("%w to DisplayExport: %d values, want 5", errReply, len(body))
	}
	var ok [4]bool
	d.ID, ok[0] = body[0].(uint16)
	d.FullPath, ok[1] = body[1].(string)
	d.Path, ok[2] = body[2].(string)
	d.Tag, ok[3] = body[3].(string)
	if ok != [4]bool{true, true, true, true} {
		return d, fmt.Errorf("%w to DisplayExport: leading values are %T %T %T %T, want uint16 and three strings",
			errReply, body[0], body[1], body[2], body[3])
	}
	clients, isSlice := asSlice(body[4])
	if !isSlice {
		return d, fmt.Errorf("%w to DisplayExport: clients are a %T, not an array", errReply, body[4])
	}
	d.Clients = make([]string, 0, len(clients))
	for i, c := range clients {
		fields, isSlice := asSlice(c)
		if !isSlice || len(fields) < 1 {
			return d, fmt.Errorf("%w to DisplayExport: client %d is a %T, not a struct", errReply, i, c)
		}
		name, isString := fields[0].(string)
		if !isString {
			return d, fmt.Errorf("%w to DisplayExport: client %d is named by a %T, not a string", errReply, i, fields[0])
		}
		d.Clients = append(d.Clients, name)
	}
	return d, nil
}

// asSlice returns the elements of any slice (godbus decodes arrays of
// structs as [][]any and structs as []any).
func asSlice(v any) ([]any, bool) {
	if s, ok := v.([]any); ok {
		return s, true
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		return nil, false
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out, true
}
