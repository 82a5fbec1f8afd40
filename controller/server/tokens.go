package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/vigil-dev/vigil/controller/rollout"
	"github.com/vigil-dev/vigil/controller/store"
)

var tokenNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// reservedTokenNames are the actor names that the audit log and the rollout
// history show for what no created token did; a token may take none of
// them, in any case.
var reservedTokenNames = []struct{ name, what string }{
	{AdminTokenName, "the configured admin token"},
	{rollout.ControllerActor, "the rollout loop's own changes"},
}

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	Name string     `json:"name"`
	Role store.Role `json:"role"`
}

// CreatedToken is the answer to POST /api/v1/tokens: the only time the
// secret is shown.
type CreatedToken struct {
	Name      string     `json:"name"`
	Role      store.Role `json:"role"`
	Token     string     `json:"token"`
	CreatedAt time.Time  `json:"createdAt"`
}

// TokenList is the body of GET /api/v1/tokens. Secrets are never listed.
type TokenList struct {
	Tokens []store.Token `json:"tokens"`
}

func (s *Server) createToken(c *gin.Context) {
	var req TokenRequest
	if !BindJSON(c, &req) {
		return
	}
	if !tokenNamePattern.MatchString(req.Name) {
		Fail(c, http.StatusBadRequest, fmt.Sprintf("name %q must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", req.Name), "name")
		return
	}
	for _, r := range reservedTokenNames {
		// Case-insensitive, so that no "Admin" passes for the admin token
		// in the audit log.
		if strings.EqualFold(req.Name, r.name) {
			Fail(c, http.StatusConflict, fmt.Sprintf("name %q is reserved for %s", req.Name, r.what), "name")
			return
		}
	}
	if !req.Role.Valid() {
		Fail(c, http.StatusBadRequest, fmt.Sprintf("role %q must be %s", req.Role, store.Roles), "role")
		return
	}
	secret, err := NewTokenSecret()
	if err != nil {
		s.FailStore(c, err)
		return
	}
	actor := ActorOf(c)
	ctx := c.Request.Context()
	tok := store.Token{Name: req.Name, Role: req.Role, Hash: HashToken(secret), CreatedBy: actor.Name}
	err = s.store.Update(ctx, actor, func(tx store.Tx) error {
		if err := tx.CreateToken(ctx, tok); err != nil {
			return err
		}
		after, _ := json.Marshal(TokenRequest{Name: req.Name, Role: req.Role})
		return tx.AppendAudit(ctx, store.AuditEntry{Action: "token.create", After: after})
	})
	if err != nil {
		s.FailStore(c, err)
		return
	}
	s.tokens.put(tok)
	c.JSON(http.StatusCreated, CreatedToken{Name: req.Name, Role: req.Role, Token: secret, CreatedAt: time.Now().UTC()})
}

func (s *Server) listTokens(c *gin.Context) {
	ts, err := s.store.Tokens(c.Request.Context())
	if err != nil {
		s.FailStore(c, err)
		return
	}
	c.JSON(http.StatusOK, TokenList{Tokens: ts})
}

func (s *Server) deleteToken(c *gin.Context) {
	name := c.Param("name")
	ctx := c.Request.Context()
	err := s.store.Update(ctx, ActorOf(c), func(tx store.Tx) error {
		if err := tx.DeleteToken(ctx, name); err != nil {
			return err
		}
		before, _ := json.Marshal(TokenRequest{Name: name})
		return tx.AppendAudit(ctx, store.AuditEntry{Action: "token.revoke", Before: before})
	})
	if err != nil {
		s.FailStore(c, err)
		return
	}
	// Here at once; other replicas hear of it through the store's change
	// feed.
	if hash := s.tokens.remove(name); hash != "" {
		s.hub.dropToken(hash)
	}
	c.Status(http.StatusNoContent)
}
