package aop

import (
	"encoding/json"
	"unicode/utf8"
)

// The fast JSON reader for the usual answers: it accepts exactly what
// json.Valid accepts, or declines, and the callers then fall back to
// encoding/json. FuzzEnvelopeFastPath holds it to that.

// scanFields reads a JSON object into out the way json.Unmarshal reads it
// into a struct of flexString fields tagged names (lower-case ASCII): a key
// matches a name regardless of ASCII case, the last match wins, other keys
// are skipped. ok is false when it declines, leaving out partly written: on
// anything that is not a valid JSON object, on keys with escapes or bytes
// outside ASCII, and on a matched value that is an object, an array or a
// string that needs decoding.
func scanFields(data []byte, names []string, out []string) (ok bool) {
	s := jsonScan{b: data}
	s.space()
	empty, ok := s.open('{', '}')
	if !ok {
		return false
	}
	for !empty {
		key, raw, plain, ok := s.member()
		if !ok || !plain {
			return false
		}
		for i, name := range names {
			if asciiEqualFold(key, name) {
				if out[i], ok = scalarText(raw); !ok {
					return false
				}
				break
			}
		}
		if empty, ok = s.more('}'); !ok {
			return false
		}
	}
	return s.end()
}

// scalarText is what flexString reads from raw, a valid JSON value: the
// text of a plain string, a number or a boolean, "" for null. ok is false
// for anything else.
func scalarText(raw []byte) (string, bool) {
	switch raw[0] {
	case '"':
		text, ok := plainString(raw)
		return string(text), ok
	case '{', '[':
		return "", false
	case 'n':
		return "", true
	}
	return string(raw), true // a number, true or false
}

// asciiEqualFold reports whether key, ASCII, equals name, lower-case ASCII,
// ignoring case.
func asciiEqualFold(key []byte, name string) bool {
	if len(key) != len(name) {
		return false
	}
	for i, c := range key {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// validJSON is json.Valid, answered without encoding/json for the texts
// json.Marshal produces.
func validJSON(b []byte) bool {
	s := jsonScan{b: b}
	s.space()
	if s.value() && s.end() {
		return true
	}
	return json.Valid(b)
}

// jsonScan reads JSON text for the fast paths, strictly by RFC 8259 as
// encoding/json does: what it accepts, json.Valid accepts. Its methods
// report false to decline, on anything invalid and on nesting deeper than
// maxScanDepth; the caller then leaves the text to encoding/json.
type jsonScan struct {
	b     []byte
	i     int
	depth int
}

const maxScanDepth = 64

func (s *jsonScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// end reports whether only white space is left.
func (s *jsonScan) end() bool {
	s.space()
	return s.i == len(s.b)
}

// open consumes the opening bracket of an object or array at s.i, and the
// closing one too when the container is empty.
func (s *jsonScan) open(opening, closing byte) (empty, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != opening {
		return false, false
	}
	s.i++
	s.space()
	if s.i < len(s.b) && s.b[s.i] == closing {
		s.i++
		return true, true
	}
	return false, true
}

// more consumes the comma before the next element, or the closing bracket.
func (s *jsonScan) more(closing byte) (done, ok bool) {
	s.space()
	if s.i >= len(s.b) {
		return false, false
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		return false, true
	case closing:
		s.i++
		return true, true
	}
	return false, false
}

// member reads `"key": value`. key is the text between the quotes, which
// is the key itself only when plain (no escapes, ASCII only); raw is the
// value without surrounding space.
func (s *jsonScan) member() (key, raw []byte, plain, ok bool) {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, nil, false, false
	}
	start := s.i
	if plain, ok = s.str(); !ok {
		return nil, nil, false, false
	}
	key = s.b[start+1 : s.i-1]
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != ':' {
		return nil, nil, false, false
	}
	s.i++
	s.space()
	start = s.i
	if !s.value() {
		return nil, nil, false, false
	}
	return key, s.b[start:s.i], plain, true
}

// value skips the value at s.i.
func (s *jsonScan) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.str()
		return ok
	case '{':
		return s.object()
	case '[':
		return s.array()
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	}
	return s.number()
}

func (s *jsonScan) object() bool {
	if s.depth++; s.depth > maxScanDepth {
		return false
	}
	empty, ok := s.open('{', '}')
	for ok && !empty {
		if _, _, _, ok = s.member(); ok {
			empty, ok = s.more('}')
		}
	}
	s.depth--
	return ok
}

func (s *jsonScan) array() bool {
	if s.depth++; s.depth > maxScanDepth {
		return false
	}
	empty, ok := s.open('[', ']')
	for ok && !empty {
		s.space()
		if ok = s.value(); ok {
			empty, ok = s.more(']')
		}
	}
	s.depth--
	return ok
}

// str skips the string at s.i. plain reports a string without escapes
// and without bytes outside ASCII, whose text is its bytes. Bytes outside
// ASCII need not be valid UTF-8, as for json.Valid.
func (s *jsonScan) str() (plain, ok bool) {
	b, i := s.b, s.i+1
	plain = true
	for {
		for i < len(b) && plainByte[b[i]] {
			i++
		}
		if i >= len(b) {
			return false, false
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return plain, true
		case c == '\\':
			plain = false
			if i++; i >= len(b) {
				return false, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i < 5 {
					return false, false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return false, false
					}
				}
				i += 4
			default:
				return false, false
			}
			i++
		case c < 0x20:
			return false, false
		default: // outside ASCII
			plain = false
			i++
		}
	}
}

// plainByte marks the bytes a string holds as they are: printable ASCII
// but the quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (s *jsonScan) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// number skips -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScan) number() bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		if i++; i >= len(b) || !isDigit(b[i]) {
			return false
		}
		i = skipDigits(b, i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		i = skipDigits(b, i)
	}
	s.i = i
	return true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
