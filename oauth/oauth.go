// Package oauth owns otphub's OAuth 2.0 token issuer: the client
// credentials grant at POST /oauth2/token, ES256 JWT access tokens with
// rotating keys published at /.well-known/jwks.json, token verification for
// access.Verifier, client secret hashing, and the platform admin client.
package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
)

// Config configures the Issuer.
type Config struct {
	// Issuer is otphub's public URL; it is the tokens' iss. Required.
	Issuer string
	// Audience is the tokens' aud. Default: Issuer.
	Audience string
	// TokenTTL is how long an access token is valid. Default 1h.
	TokenTTL time.Duration
	// KeyRotation is how long a signing key signs before a new one replaces
	// it. Retired keys stay in the JWKS until the tokens they signed have
	// expired (TokenTTL + RefreshInterval + 1 min), then are deleted.
	// Default 30 days (720h).
	KeyRotation time.Duration
	// RefreshInterval is how often Run reloads keys from the store (so
	// replicas pick up each other's keys) and rotates them when due.
	// Default 1 min.
	RefreshInterval time.Duration
	// ClientCacheTTL is how long Verify trusts that a token's client still
	// exists: a deleted client's tokens stop working within this time.
	// Default 30 s.
	ClientCacheTTL time.Duration
	// MaxClientFailures is how many failed authentications of one client id
	// from one source (see TrustProxyHeaders) within FailureWindow make the
	// token endpoint answer 429 to that source, for that id, until the
	// window ends. Other sources are not affected, so failures cannot lock
	// the real client out. Default 10; negative disables the guard.
	MaxClientFailures int
	// FailureWindow is the fixed window of MaxClientFailures. Default 5 min.
	FailureWindow time.Duration
	// TrustProxyHeaders makes the source of a failed authentication the
	// right-most address of X-Forwarded-For (the one the trusted proxy in
	// front of otphub saw) instead of the TCP peer. Default false.
	TrustProxyHeaders bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) defaults() error {
	if c.Issuer == "" {
		return errors.New("oauth: Config.Issuer is required")
	}
	if u, err := url.Parse(c.Issuer); err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("oauth: Config.Issuer %q is not an absolute URL", c.Issuer)
	}
	if c.Audience == "" {
		c.Audience = c.Issuer
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = time.Hour
	}
	if c.KeyRotation <= 0 {
		c.KeyRotation = 30 * 24 * time.Hour
	}
	if c.KeyRotation < c.TokenTTL {
		return fmt.Errorf("oauth: Config.KeyRotation (%s) must be at least TokenTTL (%s)", c.KeyRotation, c.TokenTTL)
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = time.Minute
	}
	if c.ClientCacheTTL <= 0 {
		c.ClientCacheTTL = 30 * time.Second
	}
	if c.MaxClientFailures == 0 {
		c.MaxClientFailures = 10
	}
	if c.FailureWindow <= 0 {
		c.FailureWindow = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Issuer issues and verifies access tokens. It implements access.Verifier.
type Issuer struct {
	cfg     Config
	st      store.Store
	log     *slog.Logger
	metrics *metrics

	mu         sync.RWMutex
	keys       map[string]*signingKey // access-token keys in the JWKS
	current    *signingKey            // the key that signs access tokens
	setKeys    map[string]*signingKey // SET keys in the JWKS
	setCurrent *signingKey            // the key that signs SET deliveries
	lastReload time.Time

	clientsMu sync.Mutex
	clients   map[string]clientEntry

	// verified caches tokens whose signature and claims were checked, by
	// SHA-256 of the token, so a client reusing its token (the normal case)
	// costs a map lookup instead of an ECDSA verification. Expiry and the
	// client's existence are still checked on every use.
	verifiedMu sync.Mutex
	verified   map[[32]byte]Claims

	failMu sync.Mutex
	locked map[string]time.Time // failureKey → end of its lockout

	codeGrant CodeGrant // nil: no authorization_code grant
}

type signingKey struct {
	kid     string
	priv    *ecdsa.PrivateKey
	created time.Time
	retired time.Time
}

type clientEntry struct {
	client  store.Client
	found   bool
	checked time.Time
}

const maxCacheEntries = 10000

var _ access.Verifier = (*Issuer)(nil)

// New returns an Issuer over st. It loads the signing keys, creating the
// first one (or rotating a due one) in the store.
func New(cfg Config, st store.Store, logger *slog.Logger, reg prometheus.Registerer) (*Issuer, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if st == nil {
		return nil, errors.New("oauth: nil store")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	iss := &Issuer{
		cfg:     cfg,
		st:      st,
		log:     logger.With("component", "oauth"),
		metrics: m,
		keys:    map[string]*signingKey{},
		clients: map[string]clientEntry{},
		locked:  map[string]time.Time{},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := iss.refreshKeys(ctx); err != nil {
		return nil, err
	}
	return iss, nil
}

// Run reloads and rotates keys every RefreshInterval until ctx is done.
func (i *Issuer) Run(ctx context.Context) error {
	t := time.NewTicker(i.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := i.refreshKeys(ctx); err != nil && ctx.Err() == nil {
				i.log.Warn("signing key refresh failed", "err", err)
			}
		}
	}
}

// retention is how long a retired key stays published: every token it
// signed has expired by then, even one signed by a replica that had not yet
// reloaded the keys.
func (i *Issuer) retention() time.Duration {
	return i.cfg.TokenTTL + i.cfg.RefreshInterval + time.Minute
}

// Key families in the signing_keys table, told apart by their algorithm
// column: access tokens are signed by one, the hub's signed SETs (RFC 8935
// pushes) by the other, so a SET receiver never holds the key material that
// also vouches for access tokens, and each family rotates on its own.
// Processes that do not know a family skip its rows, so adding one needs no
// migration.
const (
	tokenKeyAlgorithm = "ES256"     // JWS ES256, signs access tokens
	setKeyAlgorithm   = "SET-ES256" // JWS ES256, signs secevent+jwt deliveries
	// setKidPrefix starts the kid of a SET key, so a JWKS reader (and a
	// log line) sees the key's purpose.
	setKidPrefix = "set-"
)

// refreshKeys loads the keys from the store and, for each key family,
// generates a new key when none is current or the current one is due for
// rotation, retires the older ones and deletes retired keys past their
// retention.
func (i *Issuer) refreshKeys(ctx context.Context) error {
	now := i.cfg.Now()
	stored, err := i.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("oauth: list signing keys: %w", err)
	}
	keys, current, err := i.refreshFamily(ctx, now, stored, tokenKeyAlgorithm)
	if err != nil {
		return err
	}
	setKeys, setCurrent, err := i.refreshFamily(ctx, now, stored, setKeyAlgorithm)
	if err != nil {
		return err
	}
	i.mu.Lock()
	i.keys, i.current, i.setKeys, i.setCurrent, i.lastReload = keys, current, setKeys, setCurrent, now
	i.mu.Unlock()
	return nil
}

// refreshFamily does refreshKeys' work for the keys of one algorithm.
func (i *Issuer) refreshFamily(ctx context.Context, now time.Time, stored []store.SigningKey, algorithm string) (map[string]*signingKey, *signingKey, error) {
	keys := map[string]*signingKey{}
	var current *signingKey
	for _, sk := range stored {
		if sk.Algorithm != algorithm {
			continue
		}
		if !sk.RetiredAt.IsZero() && now.Sub(sk.RetiredAt) > i.retention() {
			if err := i.st.DeleteSigningKey(ctx, sk.KID); err != nil && !errors.Is(err, store.ErrNotFound) {
				i.log.Warn("deleting an expired signing key failed", "kid", sk.KID, "err", err)
			}
			continue
		}
		k, err := parseKey(sk)
		if err != nil {
			i.log.Error("unusable signing key in the store", "kid", sk.KID, "err", err)
			continue
		}
		keys[k.kid] = k
		if k.retired.IsZero() && (current == nil || k.created.After(current.created)) {
			current = k
		}
	}
	if current == nil || now.Sub(current.created) >= i.cfg.KeyRotation {
		k, err := i.generateKey(ctx, now, algorithm)
		if err != nil {
			return nil, nil, err
		}
		keys[k.kid] = k
		current = k
		i.log.Info("new signing key", "kid", k.kid, "algorithm", algorithm)
	}
	// Retire every other current key older than the one that signs; a key
	// another replica created concurrently and that is newer wins instead.
	for _, k := range keys {
		if k != current && k.retired.IsZero() && k.created.Before(current.created) {
			if err := i.st.RetireSigningKey(ctx, k.kid, now); err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, nil, fmt.Errorf("oauth: retire signing key: %w", err)
			}
			k.retired = now
		}
	}
	return keys, current, nil
}

func (i *Issuer) generateKey(ctx context.Context, now time.Time, algorithm string) (*signingKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("oauth: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("oauth: marshal key: %w", err)
	}
	kid := thumbprint(&priv.PublicKey)
	if algorithm == setKeyAlgorithm {
		kid = setKidPrefix + kid
	}
	k := &signingKey{kid: kid, priv: priv, created: now.UTC()}
	err = i.st.InsertSigningKey(ctx, store.SigningKey{KID: k.kid, Algorithm: algorithm, PrivateKey: der, CreatedAt: k.created})
	if err != nil {
		return nil, fmt.Errorf("oauth: store signing key: %w", err)
	}
	return k, nil
}

func parseKey(sk store.SigningKey) (*signingKey, error) {
	p, err := x509.ParsePKCS8PrivateKey(sk.PrivateKey)
	if err != nil {
		return nil, err
	}
	priv, ok := p.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, errors.New("not a P-256 ECDSA key")
	}
	return &signingKey{kid: sk.KID, priv: priv, created: sk.CreatedAt, retired: sk.RetiredAt}, nil
}

// thumbprint is the RFC 7638 JWK thumbprint of a P-256 public key.
func thumbprint(pub *ecdsa.PublicKey) string {
	j, _ := event.NewJWK("", pub)
	// Members in lexicographic order, no whitespace (RFC 7638 §3.2).
	s := `{"crv":"` + j.Crv + `","kty":"` + j.Kty + `","x":"` + j.X + `","y":"` + j.Y + `"}`
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// JWKS returns the public keys of both families (access tokens and SETs,
// told apart by kid: SET keys' start with "set-"): the current ones and
// retired ones whose tokens may still be valid, newest first. Every key is
// "use": "sig", the one value RFC 7517 §4.2 registers for signing keys;
// JOSE libraries drop keys of any other use when verifying, so a private
// use value would make SETs unverifiable with stock tools.
func (i *Issuer) JWKS() []event.JWK {
	i.mu.RLock()
	keys := make([]*signingKey, 0, len(i.keys)+len(i.setKeys))
	for _, k := range i.keys {
		keys = append(keys, k)
	}
	for _, k := range i.setKeys {
		keys = append(keys, k)
	}
	i.mu.RUnlock()
	sort.Slice(keys, func(a, b int) bool { return keys[a].created.After(keys[b].created) })
	out := make([]event.JWK, 0, len(keys))
	for _, k := range keys {
		j, err := event.NewJWK(k.kid, &k.priv.PublicKey)
		if err != nil {
			continue // not a P-256 key: never generated, never accepted from the store
		}
		out = append(out, j)
	}
	return out
}

// SigningKey returns the current SET signing key and its kid, for the
// hub's signed SET deliveries (RFC 8935); its public half is in the JWKS.
// It is never the key that signs access tokens.
func (i *Issuer) SigningKey() (kid string, key crypto.Signer) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.setCurrent.kid, i.setCurrent.priv
}

// tokenKey returns the current access-token signing key and its kid.
func (i *Issuer) tokenKey() (kid string, key crypto.Signer) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.current.kid, i.current.priv
}

// key returns the key of kid, reloading the keys from the store at most
// once a second when it is unknown (a replica may have just rotated).
func (i *Issuer) key(ctx context.Context, kid string) (*signingKey, bool) {
	i.mu.RLock()
	k, ok := i.keys[kid]
	last := i.lastReload
	i.mu.RUnlock()
	if ok {
		return k, true
	}
	if i.cfg.Now().Sub(last) < time.Second {
		return nil, false
	}
	if err := i.refreshKeys(ctx); err != nil {
		i.log.Warn("signing key reload failed", "err", err)
		return nil, false
	}
	i.mu.RLock()
	defer i.mu.RUnlock()
	k, ok = i.keys[kid]
	return k, ok
}

// EnsurePlatformAdmin makes sure a platform admin client exists. With both
// clientID and secret, it installs that client (replacing a platform admin
// of the same id whose secret differs). With neither, when no platform
// admin exists, it generates one and returns its credentials, which the
// caller prints once; otherwise it does nothing and returns "", "".
func (i *Issuer) EnsurePlatformAdmin(ctx context.Context, clientID, secret string) (createdID, createdSecret string, err error) {
	switch {
	case clientID != "" && secret != "":
		if len(clientID) > maxCredentialLen || len(secret) > maxCredentialLen {
			return "", "", fmt.Errorf("oauth: admin client id and secret must be at most %d bytes", maxCredentialLen)
		}
		existing, err := i.st.GetClient(ctx, clientID)
		switch {
		case err == nil && !existing.PlatformAdmin:
			return "", "", fmt.Errorf("oauth: client %q exists and is not a platform admin", clientID)
		case err == nil && CheckSecret(existing.SecretHash, secret):
			return "", "", nil
		case err == nil:
			if err := i.st.DeleteClient(ctx, 0, clientID); err != nil {
				return "", "", fmt.Errorf("oauth: replace admin client: %w", err)
			}
		case !errors.Is(err, store.ErrNotFound):
			return "", "", fmt.Errorf("oauth: get admin client: %w", err)
		}
		if err := i.createAdmin(ctx, clientID, secret); err != nil {
			// Another replica starting with the same settings got there first.
			if c, gerr := i.st.GetClient(ctx, clientID); errors.Is(err, store.ErrConflict) && gerr == nil && c.PlatformAdmin && CheckSecret(c.SecretHash, secret) {
				return "", "", nil
			}
			return "", "", err
		}
		return "", "", nil
	case clientID != "" || secret != "":
		return "", "", errors.New("oauth: set both the admin client id and secret, or neither")
	}
	n, err := i.st.CountPlatformAdmins(ctx)
	if err != nil {
		return "", "", fmt.Errorf("oauth: count platform admins: %w", err)
	}
	if n > 0 {
		return "", "", nil
	}
	idBytes := make([]byte, 8)
	if _, err := rand.Read(idBytes); err != nil {
		return "", "", err
	}
	createdID = "admin-" + hex.EncodeToString(idBytes)
	if createdSecret, err = NewSecret(); err != nil {
		return "", "", err
	}
	if err := i.createAdmin(ctx, createdID, createdSecret); err != nil {
		return "", "", err
	}
	return createdID, createdSecret, nil
}

func (i *Issuer) createAdmin(ctx context.Context, clientID, secret string) error {
	h, err := HashSecret(secret)
	if err != nil {
		return err
	}
	err = i.st.CreateClient(ctx, store.Client{
		ClientID: clientID, Name: "platform admin", SecretHash: h,
		Scopes: append([]string(nil), access.AllScopes...), PlatformAdmin: true,
		CreatedAt: i.cfg.Now().UTC(),
	})
	if err != nil {
		return fmt.Errorf("oauth: create admin client: %w", err)
	}
	return nil
}

// ForgetClient drops clientID from the verifier's cache so that, on this
// replica, its tokens stop working at once. The tenants API calls it after
// deleting a client; other replicas notice within ClientCacheTTL.
func (i *Issuer) ForgetClient(clientID string) {
	i.clientsMu.Lock()
	delete(i.clients, clientID)
	i.clientsMu.Unlock()
}

func marshalJWKS(keys []event.JWK) []byte {
	b, _ := event.MarshalJWKS(&event.JWKS{Keys: keys})
	return b
}
