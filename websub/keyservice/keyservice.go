// Package keyservice is the per-org key service the Asgardeo trigger for
// Ballerina (ballerinax/trigger.asgardeo) calls when its Listener starts,
// and the payload encryption that key is for.
//
// The trigger's Listener.init fetches GET {keyServiceURL}/crypto/{org}/keys/dec/0
// with its bearer token and binds the answer to the closed record KeyData
// {key, type, status, createdAt, expiry, algo, size, reason?} (all strings;
// ballerina-platform/asyncapi-triggers asyncapi/asgardeo/utils.bal
// fetchDecryptionKey, data_types.bal KeyData): any other answer, or a field
// more, fails the listener's start. Its dispatcher (dispatcher_service.bal
// decryptEvent, native/asgardeo/…/Decryption.java) decrypts deliveries whose
// event is {payload, payloadCryptoKey, ivParameterSpec} with that key, a
// base64 PKCS#8 RSA private key, and asks for /keys/dec/1 (the previous
// key) when the current one fails. Other deliveries it reads in clear.
//
// So every org has one RSA-2048 key pair, generated on first use and kept
// sealed in the store (a data key). The key service hands the private key
// to a client of the org holding the subscribe (or admin) scope, the same
// clients that may subscribe to the org's topic; the public key encrypts
// the org's Asgardeo-format deliveries once an org admin turned payload
// encryption on (PUT /api/v1/orgs/{org}/payload-encryption). Encryption
// keeps OTPs unreadable to anything between the hub and the handler that
// terminates or logs HTTP (proxies, API gateways, request logs of the
// handler's platform); it is off by default because only handlers that
// decrypt (the trigger, or code using event.DecryptAsgardeoEvent) can read
// such deliveries. docs/compatibility.md describes both.
package keyservice

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/store"
)

// KeyBits is the size of every org's RSA key.
const KeyBits = 2048

// maxCachedOrgs bounds each cache; beyond it the cache is emptied.
const maxCachedOrgs = 10000

// cacheTTL is how long an org's encryption setting is trusted by
// EncryptionKey (changes through this replica apply at once).
const cacheTTL = 5 * time.Second

// KeyData is the key service's answer, field for field the trigger's
// closed KeyData record.
type KeyData struct {
	Key       string `json:"key"`       // base64 (standard) PKCS#8 DER of the RSA private key
	Type      string `json:"type"`      // "decryptionKey"
	Status    string `json:"status"`    // "active"
	CreatedAt string `json:"createdAt"` // RFC 3339
	Expiry    string `json:"expiry"`    // "" — otphub's keys do not expire
	Algo      string `json:"algo"`      // "RSA"
	Size      string `json:"size"`      // "2048"
}

// Settings is the body of GET and PUT /api/v1/orgs/{org}/payload-encryption.
type Settings struct {
	Enabled bool `json:"enabled"`
}

// Service serves the key service and gives the resolver each org's
// encryption key.
type Service struct {
	st  store.Store
	log *slog.Logger
	now func() time.Time
	// changed is told an org's name after its setting changed here, so
	// caches built on EncryptionKey (the hub's resolver) drop it at once.
	changed func(org string)

	mu   sync.Mutex
	keys map[int64]*orgKey // by org ID; keys never change once made
	on   map[int64]setting
}

type orgKey struct {
	priv    *rsa.PrivateKey
	der     []byte
	created time.Time
}

type setting struct {
	enabled bool
	at      time.Time
}

// New returns the Service over st. changed, if set, is called with an
// org's name after its encryption setting changed through this Service.
func New(st store.Store, changed func(org string), logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if changed == nil {
		changed = func(string) {}
	}
	return &Service{st: st, log: logger.With("component", "keyservice"), now: time.Now, changed: changed,
		keys: map[int64]*orgKey{}, on: map[int64]setting{}}
}

// Register mounts:
//
//	GET /crypto/{org}/keys/dec/{n}                  the trigger's key service (subscribe or admin scope); n = 0 (current) or 1 (previous)
//	GET /api/v1/orgs/{org}/payload-encryption       {"enabled": …} (admin scope)
//	PUT /api/v1/orgs/{org}/payload-encryption       turn encryption of Asgardeo-format deliveries on or off (admin scope)
func (s *Service) Register(mux httpx.Mux, v access.Verifier) {
	with := func(scope string, h http.HandlerFunc) http.Handler {
		return access.Authenticate(v, access.Require(scope, orgs.With(s.st, s.log, h)))
	}
	mux.Handle("GET /crypto/{org}/keys/dec/{n}", with(access.ScopeSubscribe, s.handleKey))
	mux.Handle("GET /api/v1/orgs/{org}/payload-encryption", with(access.ScopeAdmin, s.handleGet))
	mux.Handle("PUT /api/v1/orgs/{org}/payload-encryption", with(access.ScopeAdmin, s.handlePut))
}

// handleKey answers the trigger's fetchDecryptionKey. otphub keeps one key
// per org (no rotation yet), so the previous key (1) is the current one:
// the trigger asks for it only after the current key failed, and then
// fetches a new token and the current key again.
func (s *Service) handleKey(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || (n != 0 && n != 1) {
		httpx.Error(w, http.StatusNotFound, "key_not_found", "keys/dec/0 is the current key and keys/dec/1 the previous one")
		return
	}
	org, _ := orgs.From(r.Context())
	k, err := s.key(r.Context(), org.ID)
	if err != nil {
		s.log.Error("loading the org's payload key failed", "org", org.Name, "err", err)
		httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; try again")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.JSON(w, http.StatusOK, KeyData{
		Key:       base64.StdEncoding.EncodeToString(k.der),
		Type:      "decryptionKey",
		Status:    "active",
		CreatedAt: k.created.UTC().Format(time.RFC3339),
		Expiry:    "",
		Algo:      "RSA",
		Size:      strconv.Itoa(KeyBits),
	})
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	on, err := s.st.PayloadEncryptionEnabled(r.Context(), org.ID)
	if err != nil {
		httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; try again")
		return
	}
	httpx.JSON(w, http.StatusOK, Settings{Enabled: on})
}

func (s *Service) handlePut(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	var in struct {
		Enabled *bool `json:"enabled"`
	}
	if err := httpx.DecodeJSON(w, r, &in, 0); err != nil {
		httpx.WriteDecodeError(w, err)
		return
	}
	if in.Enabled == nil {
		httpx.ErrorWith(w, http.StatusBadRequest, "invalid_field", "enabled is required (true or false)", map[string]any{"field": "enabled"})
		return
	}
	if *in.Enabled {
		// Make the key now, so the first encrypted delivery does not wait
		// for RSA key generation.
		if _, err := s.key(r.Context(), org.ID); err != nil {
			httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; try again")
			return
		}
	}
	if err := s.st.SetPayloadEncryption(r.Context(), org.ID, *in.Enabled); err != nil {
		httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; try again")
		return
	}
	s.mu.Lock()
	s.on[org.ID] = setting{enabled: *in.Enabled, at: s.now()}
	s.mu.Unlock()
	s.changed(org.Name)
	s.log.Info("payload encryption changed", "org", org.Name, "enabled", *in.Enabled)
	httpx.JSON(w, http.StatusOK, Settings{Enabled: *in.Enabled})
}

// EncryptionKey returns the public key Asgardeo-format deliveries of the
// org are encrypted with, or nil when the org has encryption off. The
// setting is cached for 5 s per replica.
func (s *Service) EncryptionKey(ctx context.Context, orgID int64) (*rsa.PublicKey, error) {
	now := s.now()
	s.mu.Lock()
	st, ok := s.on[orgID]
	s.mu.Unlock()
	if !ok || now.Sub(st.at) >= cacheTTL || now.Before(st.at) {
		on, err := s.st.PayloadEncryptionEnabled(ctx, orgID)
		if err != nil {
			return nil, fmt.Errorf("keyservice: %w", err)
		}
		st = setting{enabled: on, at: now}
		s.mu.Lock()
		if len(s.on) >= maxCachedOrgs {
			s.on = map[int64]setting{}
		}
		s.on[orgID] = st
		s.mu.Unlock()
	}
	if !st.enabled {
		return nil, nil
	}
	k, err := s.key(ctx, orgID)
	if err != nil {
		return nil, err
	}
	return &k.priv.PublicKey, nil
}

// storedKey is the data key's value: the PKCS#8 key and when it was made.
type storedKey struct {
	PKCS8     []byte    `json:"pkcs8"`
	CreatedAt time.Time `json:"createdAt"`
}

// key returns the org's key pair, generating and storing it on first use
// (of concurrent first uses in any process, one key wins).
func (s *Service) key(ctx context.Context, orgID int64) (*orgKey, error) {
	s.mu.Lock()
	k, ok := s.keys[orgID]
	s.mu.Unlock()
	if ok {
		return k, nil
	}
	raw, err := s.st.DataKey(ctx, "payload-key/"+strconv.FormatInt(orgID, 10), func() ([]byte, error) {
		priv, err := rsa.GenerateKey(rand.Reader, KeyBits)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, err
		}
		return json.Marshal(storedKey{PKCS8: der, CreatedAt: s.now().UTC()})
	})
	if err != nil {
		return nil, fmt.Errorf("keyservice: %w", err)
	}
	var sk storedKey
	if err := json.Unmarshal(raw, &sk); err != nil {
		return nil, fmt.Errorf("keyservice: stored key: %w", err)
	}
	p, err := x509.ParsePKCS8PrivateKey(sk.PKCS8)
	if err != nil {
		return nil, fmt.Errorf("keyservice: stored key: %w", err)
	}
	priv, ok := p.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("keyservice: stored key is not RSA")
	}
	k = &orgKey{priv: priv, der: sk.PKCS8, created: sk.CreatedAt}
	s.mu.Lock()
	if len(s.keys) >= maxCachedOrgs {
		s.keys = map[int64]*orgKey{}
	}
	s.keys[orgID] = k
	s.mu.Unlock()
	return k, nil
}
