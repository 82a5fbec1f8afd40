package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/controller/store"
)

// tokenPrefix marks Vigil tokens so that secret scanners can find leaked ones.
const tokenPrefix = "vgl_"

// AdminTokenName is the name of the admin token given in Config.AdminToken.
const AdminTokenName = "admin"

// minAdminTokenLen keeps a guessable first admin token out.
const minAdminTokenLen = 16

// NewTokenSecret returns a new random token: 256 bits, so that a hash of it
// needs no salt or stretching.
func NewTokenSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new token: %w", err)
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashToken is the stored form of a token secret.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

type adminToken struct{ hash []byte }

func newAdminToken(secret string) (*adminToken, error) {
	secret = strings.TrimSpace(secret)
	if secret == "" {
		return nil, nil
	}
	if len(secret) < minAdminTokenLen {
		return nil, fmt.Errorf("admin token is %d characters; use at least %d random ones (vigil token create prints such tokens)", len(secret), minAdminTokenLen)
	}
	h := sha256.Sum256([]byte(secret))
	return &adminToken{hash: h[:]}, nil
}

const tokenKey = "vigil.token"

var errNoToken = errors.New("missing bearer token: send Authorization: Bearer <token>")

// authenticate finds the token of a request. It never logs the secret.
func (s *Server) authenticate(c *gin.Context) (store.Token, int, error) {
	h := c.GetHeader("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return store.Token{}, http.StatusUnauthorized, errNoToken
	}
	secret = strings.TrimSpace(secret)
	sum := sha256.Sum256([]byte(secret))
	if s.admin != nil && subtle.ConstantTimeCompare(sum[:], s.admin.hash) == 1 {
		return store.Token{Name: AdminTokenName, Role: store.RoleAdmin}, 0, nil
	}
	hash := hex.EncodeToString(sum[:])
	tok, err := s.tokens.lookup(c.Request.Context(), hash)
	if errors.Is(err, store.ErrNotFound) || (err == nil && subtle.ConstantTimeCompare([]byte(hash), []byte(tok.Hash)) != 1) {
		return store.Token{}, http.StatusUnauthorized, errors.New("invalid or revoked token")
	}
	if err != nil {
		s.log.Error("look up token", "err", err)
		return store.Token{}, http.StatusServiceUnavailable, errors.New("cannot check the token now; try again")
	}
	return tok, 0, nil
}

// requireRole admits requests whose token has one of roles.
func (s *Server) requireRole(roles ...store.Role) gin.HandlerFunc {
	return func(c *gin.Context) {
		tok, status, err := s.authenticate(c)
		if err != nil {
			switch status {
			case http.StatusUnauthorized:
				c.Header("WWW-Authenticate", `Bearer realm="vigil"`)
			case http.StatusServiceUnavailable:
				c.Header("Retry-After", strconv.Itoa(RetryAfterSeconds))
			}
			Fail(c, status, err.Error(), "")
			return
		}
		if !slices.Contains(roles, tok.Role) {
			Fail(c, http.StatusForbidden, fmt.Sprintf("token %q has role %s, which may not %s %s", tok.Name, tok.Role, c.Request.Method, c.FullPath()), "")
			return
		}
		c.Set(tokenKey, tok)
		c.Next()
	}
}

// tokenOf returns the token that requireRole admitted the request with.
func tokenOf(c *gin.Context) store.Token {
	v, _ := c.Get(tokenKey)
	tok, _ := v.(store.Token)
	return tok
}

// ReasonHeader carries the optional "why" of a change into the audit log.
const ReasonHeader = "X-Vigil-Reason"

// maxReasonLen bounds the message an audit entry keeps.
const maxReasonLen = 1024

// ActorOf returns who makes the request, for the audit log: the token's
// name, and the X-Vigil-Reason header as the message.
func ActorOf(c *gin.Context) store.Actor {
	msg := c.GetHeader(ReasonHeader)
	if len(msg) > maxReasonLen {
		msg = msg[:maxReasonLen]
	}
	return store.Actor{Name: tokenOf(c).Name, Message: msg}
}
