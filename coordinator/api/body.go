package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
)

// Request bodies are decoded into generic JSON values (json.Number for
// numbers) and checked the way Cinder's JSON schemas check them, with the
// messages jsonschema and Cinder's validators produce. Decoding into Go
// structs would silently accept what Cinder refuses (1.0 for an integer,
// unknown keys) and refuse what Cinder accepts ("10" for a size).

// object is a decoded JSON object.
type object = map[string]any

// dbMaxInt is Cinder's DB_MAX_INT, the upper bound of sizes and limits.
const dbMaxInt = 0x7FFFFFFF

// decodeBody parses the request body. An empty body is an empty object, as
// Cinder sees it; a body in another media type is a 415.
func decodeBody(c *fiber.Ctx) (any, error) {
	body := c.Body()
	if len(bytes.TrimSpace(body)) == 0 {
		return object{}, nil
	}
	if ct := c.Get(fiber.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != fiber.MIMEApplicationJSON && mt != "application/vnd.openstack.volume+json") {
			return nil, &apiError{Status: http.StatusUnsupportedMediaType, Msg: "Unsupported Content-Type"}
		}
	}
	return parseJSON(body)
}

// parseJSON decodes one JSON document; anything else (invalid UTF-8,
// trailing data) is Cinder's "Malformed request body".
func parseJSON(body []byte) (any, error) {
	if !utf8.Valid(body) {
		return nil, badRequest(msgMalformedBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, badRequest(msgMalformedBody)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest(msgMalformedBody)
	}
	return v, nil
}

// ---- schema-style checks ----

// fieldError is jsonschema's error for a nested value, as Cinder words it.
func fieldError(field string, value any, msg string) error {
	return badRequest("Invalid input for field/attribute %s. Value: %s. %s", field, pyRepr(value), msg)
}

// typeError is jsonschema's "is not of type" message.
func typeError(field string, value any, types ...string) error {
	quoted := make([]string, len(types))
	for i, t := range types {
		quoted[i] = "'" + t + "'"
	}
	msg := fmt.Sprintf("%s is not of type %s", pyRepr(value), strings.Join(quoted, ", "))
	if field == "" {
		return badRequest("%s", msg)
	}
	return fieldError(field, value, msg)
}

// requireObject checks the top level of a body.
func requireObject(body any) (object, error) {
	obj, ok := body.(object)
	if !ok {
		return nil, typeError("", body, "object")
	}
	return obj, nil
}

// requiredProperty is jsonschema's message for a missing key.
func requiredProperty(name string) error {
	return badRequest("'%s' is a required property", name)
}

// decodeObject decodes the request body, which must be a JSON object.
func decodeObject(c *fiber.Ctx) (object, error) {
	body, err := decodeBody(c)
	if err != nil {
		return nil, err
	}
	return requireObject(body)
}

// unwrap returns the value of a body {key: value} that has no other key.
func unwrap(body any, key string) (any, error) {
	top, err := requireObject(body)
	if err != nil {
		return nil, err
	}
	if err := rejectExtra("", top, key); err != nil {
		return nil, err
	}
	raw, ok := top[key]
	if !ok {
		return nil, requiredProperty(key)
	}
	return raw, nil
}

// unwrapObject is unwrap for a body whose value must be an object.
func unwrapObject(body any, key string) (object, error) {
	raw, err := unwrap(body, key)
	if err != nil {
		return nil, err
	}
	obj, ok := raw.(object)
	if !ok {
		return nil, typeError(key, raw, "object")
	}
	return obj, nil
}

// decodeWrapped decodes a request body {key: {...}} and returns its object.
func decodeWrapped(c *fiber.Ctx, key string) (object, error) {
	body, err := decodeBody(c)
	if err != nil {
		return nil, err
	}
	return unwrapObject(body, key)
}

// rejectExtra refuses keys of obj not in allowed (additionalProperties:
// false). field names the object for nested ones ("" at the top level).
func rejectExtra(field string, obj object, allowed ...string) error {
	var extra []string
	for k := range obj {
		if !slices.Contains(allowed, k) {
			extra = append(extra, k)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	return additionalProperties(field, obj, extra)
}

func additionalProperties(field string, obj any, extra []string) error {
	sort.Strings(extra)
	quoted := make([]string, len(extra))
	for i, k := range extra {
		quoted[i] = pyRepr(k)
	}
	verb := "was"
	if len(extra) > 1 {
		verb = "were"
	}
	msg := fmt.Sprintf("Additional properties are not allowed (%s %s unexpected)", strings.Join(quoted, ", "), verb)
	if field == "" {
		return badRequest("%s", msg)
	}
	return fieldError(field, obj, msg)
}

// stringField checks a string-or-null property of at most maxLen
// characters (and at least minLen). It returns the string ("" for null)
// and whether the value was null.
func stringField(field string, v any, nullable bool, minLen, maxLen int) (string, bool, error) {
	if v == nil && nullable {
		return "", true, nil
	}
	s, ok := v.(string)
	if !ok {
		if nullable {
			return "", false, typeError(field, v, "string", "null")
		}
		return "", false, typeError(field, v, "string")
	}
	n := utf8.RuneCountInString(s)
	if n < minLen {
		return "", false, fieldError(field, v, pyRepr(v)+" is too short")
	}
	if maxLen > 0 && n > maxLen {
		return "", false, fieldError(field, v, pyRepr(v)+" is too long")
	}
	return s, false, nil
}

// nameField checks a name or description: string or null, at most 255
// characters once surrounding whitespace is stripped (Cinder's
// *_non_mandatory_remove_white_spaces formats); the stripped value is kept.
func nameField(field string, v any) (string, error) {
	s, _, err := stringField(field, v, true, 0, 0)
	if err != nil {
		return "", err
	}
	s = strings.TrimSpace(s)
	if n := utf8.RuneCountInString(s); n > 255 {
		return "", fieldError(field, v, fmt.Sprintf("%s has %d characters, more than 255.", field, n))
	}
	return s, nil
}

// boolEnum is Cinder's parameter_types.boolean: JSON booleans and these
// exact strings.
var boolEnum = map[string]bool{
	"True": true, "TRUE": true, "true": true, "1": true, "ON": true, "On": true, "on": true,
	"YES": true, "Yes": true, "yes": true, "y": true, "t": true,
	"False": false, "FALSE": false, "false": false, "0": false, "OFF": false, "Off": false, "off": false,
	"NO": false, "No": false, "no": false, "n": false, "f": false,
}

// boolField checks parameter_types.boolean (or optional_boolean when
// nullable; null is false).
func boolField(field string, v any, nullable bool) (bool, error) {
	switch t := v.(type) {
	case nil:
		if nullable {
			return false, nil
		}
	case bool:
		return t, nil
	case string:
		if b, ok := boolEnum[t]; ok {
			return b, nil
		}
	}
	if nullable {
		return false, fieldError(field, v, pyRepr(v)+" is not valid under any of the given schemas")
	}
	if _, isString := v.(string); isString {
		return false, fieldError(field, v, pyRepr(v)+" is not one of "+boolEnumRepr)
	}
	return false, typeError(field, v, "boolean", "string")
}

const boolEnumRepr = "[True, 'True', 'TRUE', 'true', '1', 'ON', 'On', 'on', 'YES', 'Yes', 'yes', 'y', 't', " +
	"False, 'False', 'FALSE', 'false', '0', 'OFF', 'Off', 'off', 'NO', 'No', 'no', 'n', 'f']"

// optionalUUIDField checks parameter_types.optional_uuid (null or a UUID).
func optionalUUIDField(field string, v any) (string, error) {
	if v == nil {
		return "", nil
	}
	if s, ok := v.(string); ok && isUUID(s) {
		return s, nil
	}
	return "", fieldError(field, v, pyRepr(v)+" is not valid under any of the given schemas")
}

// jsonInteger returns the integer a JSON number holds; floats (1.0, 1e3)
// are not integers, as in Draft 4.
func jsonInteger(v any) (*big.Int, bool) {
	num, ok := v.(json.Number)
	if !ok || strings.ContainsAny(string(num), ".eE") {
		return nil, false
	}
	n, ok := new(big.Int).SetString(string(num), 10)
	return n, ok
}

var digits = regexp.MustCompile(`^[0-9]+$`)

// sizeField checks parameter_types.volume_size: an integer or a string of
// digits, 1..DB_MAX_INT.
func sizeField(field string, v any) (int64, error) {
	n, ok := jsonInteger(v)
	if !ok {
		s, isStr := v.(string)
		if !isStr {
			return 0, typeError(field, v, "integer", "string")
		}
		if !digits.MatchString(s) {
			return 0, fieldError(field, v, pyRepr(v)+" does not match '^[0-9]+$'")
		}
		n, _ = new(big.Int).SetString(s, 10)
	}
	return intRange(field, v, n, 1, dbMaxInt)
}

func intRange(field string, v any, n *big.Int, lo, hi int64) (int64, error) {
	if n.Cmp(big.NewInt(lo)) < 0 {
		return 0, fieldError(field, v, fmt.Sprintf("%s is less than the minimum of %d", n, lo))
	}
	if n.Cmp(big.NewInt(hi)) > 0 {
		return 0, fieldError(field, v, fmt.Sprintf("%s is greater than the maximum of %d", n, hi))
	}
	return n.Int64(), nil
}

// validateInteger is oslo's strutils.validate_integer as Cinder's quota
// and pagination code use it: int(str(value)) within [lo, hi].
func validateInteger(v any, name string, lo, hi int64) (int64, error) {
	var text string
	switch t := v.(type) {
	case json.Number:
		text = string(t)
	case string:
		text = t
	default:
		return 0, badRequest("%s must be an integer", name)
	}
	text = strings.TrimSpace(text)
	n, ok := new(big.Int).SetString(strings.TrimPrefix(text, "+"), 10)
	if !ok || text == "" || strings.HasPrefix(text, "+-") {
		return 0, badRequest("%s must be an integer", name)
	}
	if n.Cmp(big.NewInt(lo)) < 0 {
		return 0, badRequest("%s must be >= %d", name, lo)
	}
	if n.Cmp(big.NewInt(hi)) > 0 {
		return 0, badRequest("%s must be <= %d", name, hi)
	}
	return n.Int64(), nil
}

// metadataKey is the key pattern of parameter_types.extra_specs.
var metadataKey = regexp.MustCompile(`^[a-zA-Z0-9\-_:. /]{1,255}$`)

// specKey is the key pattern of extra_specs_with_no_spaces_key.
var specKey = regexp.MustCompile(`^[a-zA-Z0-9\-_:.]{1,255}$`)

// stringMap checks a metadata-like object: keys matching keyPattern,
// string values of at most 255 characters (null values allowed when
// nullValues, and returned as ""). A null map is allowed when nullable.
func stringMap(field string, v any, nullable, nullValues bool, keyPattern *regexp.Regexp) (map[string]string, error) {
	if v == nil && nullable {
		return nil, nil
	}
	obj, ok := v.(object)
	if !ok {
		if nullable {
			return nil, typeError(field, v, "object", "null")
		}
		return nil, typeError(field, v, "object")
	}
	var extra []string
	for k := range obj {
		if !keyPattern.MatchString(k) {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		return nil, additionalProperties(field, obj, extra)
	}
	out := make(map[string]string, len(obj))
	for _, k := range sortedKeys(obj) {
		s, _, err := stringField(k, obj[k], nullValues, 0, 255)
		if err != nil {
			return nil, err
		}
		out[k] = s
	}
	return out, nil
}

func sortedKeys(obj object) []string {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// maxRepr bounds how much of a rejected value an error message echoes.
const maxRepr = 256

// pyRepr renders a decoded JSON value as Python's repr would, which is how
// Cinder's validation messages show values.
func pyRepr(v any) string {
	var b strings.Builder
	writeRepr(&b, v)
	if b.Len() > maxRepr {
		s := b.String()
		cut := maxRepr
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return s[:cut] + "..."
	}
	return b.String()
}

func writeRepr(b *strings.Builder, v any) {
	if b.Len() > maxRepr {
		return
	}
	switch t := v.(type) {
	case nil:
		b.WriteString("None")
	case bool:
		if t {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case json.Number:
		b.WriteString(string(t))
	case string:
		b.WriteString(pyString(t))
	case []any:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e)
		}
		b.WriteByte(']')
	case object:
		b.WriteByte('{')
		for i, k := range sortedKeys(t) {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyString(k))
			b.WriteString(": ")
			writeRepr(b, t[k])
		}
		b.WriteByte('}')
	default:
		fmt.Fprint(b, t)
	}
}

// pyString quotes s as Python's repr does for common strings.
func pyString(s string) string {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(q):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x` + strconv.FormatInt(int64(r)+0x100, 16)[1:])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}
