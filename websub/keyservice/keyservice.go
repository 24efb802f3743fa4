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
// So every org has an RSA-2048 key pair, generated on first use and kept
// sealed in the store (a data key per generation); an org admin rotates it
// (POST /api/v1/orgs/{org}/payload-encryption/rotate), after which
// keys/dec/0 is the new key and keys/dec/1 the one before, as the trigger
// expects. The key service hands the private key
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

// cacheTTL is how long an org's settings are trusted by EncryptionKey
// (changes through this replica apply at once).
const cacheTTL = 5 * time.Second

// maxCachedOrgs bounds each cache; beyond it the cache is emptied.
const maxCachedOrgs = 10000

// KeyData is the key service's answer, field for field the trigger's
// closed KeyData record.
type KeyData struct {
	Key       string `json:"key"`       // base64 (standard) PKCS#8 DER of the RSA private key
	Type      string `json:"type"`      // "decryptionKey"
	Status    string `json:"status"`    // "active" for the current key, "expired" for the previous one
	CreatedAt string `json:"createdAt"` // RFC 3339
	Expiry    string `json:"expiry"`    // "" — otphub's keys do not expire; they are rotated
	Algo      string `json:"algo"`      // "RSA"
	Size      string `json:"size"`      // "2048"
}

// Settings is the body of GET and PUT /api/v1/orgs/{org}/payload-encryption
// (PUT reads enabled only) and of the rotation's answer.
type Settings struct {
	Enabled bool `json:"enabled"`
	// KeyGeneration counts rotations: keys/dec/0 is this generation's key.
	KeyGeneration int64 `json:"keyGeneration"`
	// KeyCreatedAt is when the current key was made; absent until the
	// key service or encryption first needed it.
	KeyCreatedAt *time.Time `json:"keyCreatedAt,omitempty"`
}

// Service serves the key service and gives the resolver each org's
// encryption key.
type Service struct {
	st  store.Store
	log *slog.Logger
	now func() time.Time
	// changed is told an org's name after its settings changed here, so
	// caches built on EncryptionKey (the hub's resolver) drop it at once.
	changed func(org string)

	mu       sync.Mutex
	keys     map[keyID]*orgKey // keys never change once made
	settings map[int64]cached
}

type keyID struct {
	org int64
	gen int64
}

type orgKey struct {
	priv    *rsa.PrivateKey
	der     []byte
	created time.Time
}

type cached struct {
	store.PayloadSettings
	at time.Time
}

// New returns the Service over st. changed, if set, is called with an
// org's name after its settings changed through this Service.
func New(st store.Store, changed func(org string), logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if changed == nil {
		changed = func(string) {}
	}
	return &Service{st: st, log: logger.With("component", "keyservice"), now: time.Now, changed: changed,
		keys: map[keyID]*orgKey{}, settings: map[int64]cached{}}
}

// Register mounts:
//
//	GET  /crypto/{org}/keys/dec/{n}                       the trigger's key service (subscribe or admin scope); n = 0 (current) or 1 (previous)
//	GET  /api/v1/orgs/{org}/payload-encryption            the settings (admin scope)
//	PUT  /api/v1/orgs/{org}/payload-encryption            {"enabled": …}: encryption of asgardeo deliveries on or off (admin scope)
//	POST /api/v1/orgs/{org}/payload-encryption/rotate     a new key; the current one becomes the previous (admin scope)
func (s *Service) Register(mux httpx.Mux, v access.Verifier) {
	subscriber, admin := orgs.Scoped(v, access.ScopeSubscribe, s.st, s.log), orgs.Scoped(v, access.ScopeAdmin, s.st, s.log)
	mux.Handle("GET /crypto/{org}/keys/dec/{n}", subscriber(s.handleKey))
	mux.Handle("GET /api/v1/orgs/{org}/payload-encryption", admin(s.handleGet))
	mux.Handle("PUT /api/v1/orgs/{org}/payload-encryption", admin(s.handlePut))
	mux.Handle("POST /api/v1/orgs/{org}/payload-encryption/rotate", admin(s.handleRotate))
}

// handleKey answers the trigger's fetchDecryptionKey: 0 is the current
// key, 1 the previous one (the trigger asks for it when the current key
// fails, then fetches a new token and the current key again). Before the
// first rotation there is no previous key and 1 answers the current one.
func (s *Service) handleKey(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || (n != 0 && n != 1) {
		httpx.Error(w, http.StatusNotFound, "key_not_found", "keys/dec/0 is the current key and keys/dec/1 the previous one")
		return
	}
	org, _ := orgs.From(r.Context())
	ps, err := s.settingsOf(r.Context(), org.ID, true)
	if err != nil {
		s.unavailable(w, org, err)
		return
	}
	gen, status := ps.KeyGeneration, "active"
	if n == 1 && gen > 0 {
		gen, status = gen-1, "expired"
	}
	k, err := s.key(r.Context(), org.ID, gen)
	if err != nil {
		s.unavailable(w, org, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.JSON(w, http.StatusOK, KeyData{
		Key:       base64.StdEncoding.EncodeToString(k.der),
		Type:      "decryptionKey",
		Status:    status,
		CreatedAt: k.created.UTC().Format(time.RFC3339),
		Expiry:    "",
		Algo:      "RSA",
		Size:      strconv.Itoa(KeyBits),
	})
}

func (s *Service) unavailable(w http.ResponseWriter, org store.Org, err error) {
	s.log.Error("payload keys: the store failed", "org", org.Name, "err", err)
	httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; try again")
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	ps, err := s.settingsOf(r.Context(), org.ID, true)
	if err != nil {
		s.unavailable(w, org, err)
		return
	}
	httpx.JSON(w, http.StatusOK, s.view(r.Context(), org.ID, ps))
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
	if err := s.st.SetPayloadEncryption(r.Context(), org.ID, *in.Enabled); err != nil {
		s.unavailable(w, org, err)
		return
	}
	s.applied(w, r, org, "payload encryption changed", "enabled", *in.Enabled)
}

// handleRotate makes a new key current. Deliveries encrypted from then on
// use it; the previous key stays served as keys/dec/1, so a handler that
// still holds it fails over as the trigger does (previous key, then a new
// token and the current key). Older keys stay sealed in the store but are
// no longer served.
func (s *Service) handleRotate(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	if _, err := s.st.RotatePayloadKey(r.Context(), org.ID); err != nil {
		s.unavailable(w, org, err)
		return
	}
	s.applied(w, r, org, "payload key rotated")
}

// applied drops the cached settings of org, tells the hub, and answers
// with the settings as stored now (making the current key, so the first
// encrypted delivery does not wait for RSA key generation).
func (s *Service) applied(w http.ResponseWriter, r *http.Request, org store.Org, msg string, args ...any) {
	s.mu.Lock()
	delete(s.settings, org.ID)
	s.mu.Unlock()
	s.changed(org.Name)
	ps, err := s.settingsOf(r.Context(), org.ID, false)
	if err != nil {
		s.unavailable(w, org, err)
		return
	}
	v := s.view(r.Context(), org.ID, ps)
	s.log.Info(msg, append([]any{"org", org.Name, "key_generation", ps.KeyGeneration}, args...)...)
	httpx.JSON(w, http.StatusOK, v)
}

// view is the API form of ps, with the current key's creation time (made
// now if it does not exist yet).
func (s *Service) view(ctx context.Context, orgID int64, ps store.PayloadSettings) Settings {
	v := Settings{Enabled: ps.Enabled, KeyGeneration: ps.KeyGeneration}
	if k, err := s.key(ctx, orgID, ps.KeyGeneration); err == nil {
		t := k.created.UTC()
		v.KeyCreatedAt = &t
	}
	return v
}

// settingsOf returns the org's settings, from the cache when useCache and
// it is fresh.
func (s *Service) settingsOf(ctx context.Context, orgID int64, useCache bool) (store.PayloadSettings, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.settings[orgID]
	s.mu.Unlock()
	if useCache && ok && now.Sub(c.at) < cacheTTL && !now.Before(c.at) {
		return c.PayloadSettings, nil
	}
	ps, err := s.st.GetPayloadSettings(ctx, orgID)
	if err != nil {
		return store.PayloadSettings{}, fmt.Errorf("keyservice: %w", err)
	}
	s.mu.Lock()
	if len(s.settings) >= maxCachedOrgs {
		s.settings = map[int64]cached{}
	}
	s.settings[orgID] = cached{PayloadSettings: ps, at: now}
	s.mu.Unlock()
	return ps, nil
}

// EncryptionKey returns the public key the org's Asgardeo-format
// deliveries are encrypted with (its current generation's), or nil when
// the org has encryption off. Settings are cached for 5 s per replica.
func (s *Service) EncryptionKey(ctx context.Context, orgID int64) (*rsa.PublicKey, error) {
	ps, err := s.settingsOf(ctx, orgID, true)
	if err != nil || !ps.Enabled {
		return nil, err
	}
	k, err := s.key(ctx, orgID, ps.KeyGeneration)
	if err != nil {
		return nil, err
	}
	return &k.priv.PublicKey, nil
}

// storedKey is a data key's value: the PKCS#8 key and when it was made.
type storedKey struct {
	PKCS8     []byte    `json:"pkcs8"`
	CreatedAt time.Time `json:"createdAt"`
}

// dataKeyName names generation gen of the org's key in the data keys.
func dataKeyName(orgID, gen int64) string {
	name := "payload-key/" + strconv.FormatInt(orgID, 10)
	if gen > 0 {
		name += "/" + strconv.FormatInt(gen, 10)
	}
	return name
}

// key returns generation gen of the org's key pair, generating and storing
// it on first use (of concurrent first uses in any process, one key wins).
func (s *Service) key(ctx context.Context, orgID, gen int64) (*orgKey, error) {
	id := keyID{orgID, gen}
	s.mu.Lock()
	k, ok := s.keys[id]
	s.mu.Unlock()
	if ok {
		return k, nil
	}
	raw, err := s.st.DataKey(ctx, dataKeyName(orgID, gen), func() ([]byte, error) {
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
		s.keys = map[keyID]*orgKey{}
	}
	s.keys[id] = k
	s.mu.Unlock()
	return k, nil
}
