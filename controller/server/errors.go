package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/controller/store"
	"github.com/vigil-dev/vigil/sdk/flag"
)

// ErrorBody is the body of every 4xx and 5xx response.
type ErrorBody struct {
	Error string `json:"error"`
	// Field names the offending field of the request, when there is one.
	Field string `json:"field"`
	// Flag names the offending flag of a flags file, when there is one.
	Flag string `json:"flag,omitempty"`
	// Errors lists every problem when validation found several.
	Errors []FieldProblem `json:"errors,omitempty"`
}

// FieldProblem is one validation problem.
type FieldProblem struct {
	Flag    string `json:"flag"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Fail aborts the request with status and an error body.
func Fail(c *gin.Context, status int, msg, field string) {
	c.AbortWithStatusJSON(status, ErrorBody{Error: msg, Field: field})
}

// RetryAfterSeconds is what Retry-After says while the store is
// unavailable: about when a restarted or failed-over database answers.
const RetryAfterSeconds = 5

// FailStore aborts the request with the status that err from the store calls
// for: 404, 409, 503 with Retry-After while the store is unavailable, or
// 500. The message of a 5xx is logged, not returned.
func (s *Server) FailStore(c *gin.Context, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		Fail(c, http.StatusNotFound, err.Error(), "")
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrExists):
		Fail(c, http.StatusConflict, err.Error(), "")
	case store.Unavailable(err):
		s.log.Warn("store unavailable", "route", c.FullPath(), "err", err)
		FailUnavailable(c, "the store is unavailable; nothing was changed; retry")
	default:
		s.log.Error("request failed", "route", c.FullPath(), "err", err)
		Fail(c, http.StatusInternalServerError, "internal error; see the controller's log", "")
	}
}

// FailUnavailable answers 503 with Retry-After, for a request that needs the
// store while store.Unavailable says it cannot be reached.
func FailUnavailable(c *gin.Context, msg string) {
	c.Header("Retry-After", strconv.Itoa(RetryAfterSeconds))
	Fail(c, http.StatusServiceUnavailable, msg, "")
}

// ReadBody reads the request body within the size limit. On failure it has
// already answered the request (413 or 400) and returns false.
func ReadBody(c *gin.Context) ([]byte, bool) {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			failTooLarge(c, mbe.Limit)
			return nil, false
		}
		Fail(c, http.StatusBadRequest, "read request body: "+err.Error(), "")
		return nil, false
	}
	return body, true
}

// failTooLarge answers 413 for a body over limit bytes.
func failTooLarge(c *gin.Context, limit int64) {
	Fail(c, http.StatusRequestEntityTooLarge, "request body is larger than the limit of "+strconv.FormatInt(limit, 10)+" bytes", "")
}

// BindJSON reads the request body into v strictly: it refuses a
// Content-Type other than JSON (415), and invalid UTF-8, NUL characters,
// keys given twice, unknown fields and trailing data (400, naming the
// field). On failure it has already answered and returns false.
func BindJSON(c *gin.Context, v any) bool {
	if !checkContentType(c, jsonTypes) {
		return false
	}
	body, ok := ReadBody(c)
	if !ok {
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		Fail(c, http.StatusBadRequest, "request body is empty; send a JSON object", "")
		return false
	}
	if err := CheckJSON(body); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			Fail(c, http.StatusBadRequest, "invalid JSON: "+fe.Error(), fe.field)
		} else {
			Fail(c, http.StatusBadRequest, err.Error(), "")
		}
		return false
	}
	if err := flag.DecodeStrict(body, v); err != nil {
		msg, field := describeJSONError(err)
		Fail(c, http.StatusBadRequest, msg, field)
		return false
	}
	return true
}

// describeJSONError turns a decoding error into a message and the field it
// is about.
func describeJSONError(err error) (string, string) {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var pe *flag.PositionError
	switch {
	case errors.As(err, &pe):
		return pe.Error(), pe.Field()
	case errors.As(err, &te):
		return "invalid JSON: " + te.Field + ": want " + te.Type.String() + ", got " + te.Value, te.Field
	case errors.As(err, &se):
		return "invalid JSON at byte " + strconv.FormatInt(se.Offset, 10) + ": " + se.Error(), ""
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, `json: unknown field "`); ok {
		field := strings.TrimSuffix(rest, `"`)
		return "unknown field " + strconv.Quote(field), field
	}
	return "invalid JSON: " + msg, ""
}

// FailValidation answers 400 for errors from flag validation, naming the
// first problem's field and listing every problem.
func FailValidation(c *gin.Context, err error) {
	body := ErrorBody{Error: err.Error()}
	for _, e := range flag.Errors(err) {
		var fe *flag.FieldError
		if errors.As(e, &fe) {
			body.Errors = append(body.Errors, FieldProblem{Flag: fe.Flag, Field: fe.Field, Message: fe.Message})
		}
	}
	if len(body.Errors) > 0 {
		first := body.Errors[0]
		body.Flag, body.Field = first.Flag, first.Field
		body.Error = "flag " + first.Flag + ": " + first.Field + ": " + first.Message
		if n := len(body.Errors); n > 1 {
			body.Error += " (and " + strconv.Itoa(n-1) + " more problems, listed in errors)"
		}
	}
	c.AbortWithStatusJSON(http.StatusBadRequest, body)
}
