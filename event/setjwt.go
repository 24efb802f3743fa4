package event

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// SETContentType is the media type of a signed SET (RFC 8417 §7.2,
// RFC 8935 §2).
const SETContentType = "application/secevent+jwt"

// SETType is the JWT "typ" header of a signed SET (RFC 8417 §2.3).
const SETType = "secevent+jwt"

// SET signature algorithms.
const (
	AlgES256 = "ES256" // ECDSA P-256 with SHA-256
	AlgRS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256
)

// maxTokenBytes caps a signed SET: a MaxEventBytes claims set in base64url
// plus header and signature.
const maxTokenBytes = MaxEventBytes*4/3 + 2048

// Signer signs SETs with one key. Key is any crypto.Signer (an in-memory
// *ecdsa.PrivateKey or *rsa.PrivateKey, or an HSM/KMS key): an ECDSA P-256
// key signs ES256, an RSA key (at least 2048 bits) RS256. KeyID is the
// "kid" header, the key's ID in the hub's JWKS.
type Signer struct {
	Key   crypto.Signer
	KeyID string
}

// Sign returns ev as a signed SET in JWS compact serialization.
func (s *Signer) Sign(ev *SmsOtpNotificationEvent) (string, error) {
	return SignSET(ev, s.Key, s.KeyID)
}

// setWireClaims is setWire as a jwt.Claims for verifying. The registered
// time claims are not used by a SET (RFC 8417 §4.1), so the jwt validator
// has nothing to check; the event's own checks run afterwards.
type setWireClaims struct{ setWire }

func (setWireClaims) GetExpirationTime() (*jwt.NumericDate, error) { return nil, nil }
func (setWireClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return nil, nil }
func (setWireClaims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (setWireClaims) GetIssuer() (string, error)                   { return "", nil }
func (setWireClaims) GetSubject() (string, error)                  { return "", nil }
func (setWireClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// AlgFor returns the JWS algorithm SignSET uses for key's public key:
// ES256 for ECDSA P-256, RS256 for RSA of at least 2048 bits.
func AlgFor(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("event: ECDSA key on %s, want P-256", k.Curve.Params().Name)
		}
		return AlgES256, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("event: RSA key of %d bits, want at least 2048", k.N.BitLen())
		}
		return AlgRS256, nil
	default:
		return "", fmt.Errorf("event: unsupported key type %T (want ECDSA P-256 or RSA)", pub)
	}
}

// SignSET signs ev as an RFC 8417 SET in JWS compact serialization, with
// the header {"alg": ES256|RS256, "kid": kid, "typ": "secevent+jwt"} and
// the claims of MarshalSET. RS256 signatures are deterministic; ES256 ones
// are not.
func SignSET(ev *SmsOtpNotificationEvent, key crypto.Signer, kid string) (string, error) {
	if key == nil {
		return "", errors.New("event: no signing key")
	}
	alg, err := AlgFor(key.Public())
	if err != nil {
		return "", err
	}
	// The header and claims are written here, not by jwt.Token, so that the
	// payload is exactly MarshalSET's bytes (jwt.Token would re-escape
	// '<', '>' and '&').
	header, err := marshalJSON(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid,omitempty"`
		Typ string `json:"typ"`
	}{alg, kid, SETType})
	if err != nil {
		return "", err
	}
	claims, err := MarshalSET(ev)
	if err != nil {
		return "", fmt.Errorf("event: encode SET: %w", err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	input := b64(header) + "." + b64(claims)
	digest := sha256.Sum256([]byte(input))
	sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("event: sign SET: %w", err)
	}
	if alg == AlgES256 {
		if sig, err = ecdsaRaw(sig, 32); err != nil {
			return "", err
		}
	}
	return input + "." + b64(sig), nil
}

// ecdsaRaw turns crypto.Signer's ASN.1 ECDSA signature into the JWS form:
// R and S as fixed-size big-endian integers (RFC 7518 §3.4).
func ecdsaRaw(der []byte, size int) ([]byte, error) {
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) > 0 {
		return nil, errors.New("event: signer returned a malformed ECDSA signature")
	}
	if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > size*8 || rs.S.BitLen() > size*8 {
		return nil, errors.New("event: signer returned an out-of-range ECDSA signature")
	}
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out, nil
}

// VerifySET verifies a signed SET and decodes its event. The header's
// "typ" must be "secevent+jwt" (or "application/secevent+jwt", any case),
// "alg" must be ES256 or RS256 (never "none", never HMAC), and keyfunc
// (for example JWKS.Keyfunc) must yield the public key the token verifies
// with. The claims are then decoded as UnmarshalSET does. Errors match
// ErrMalformed, or ErrBadSignature when the token is well-formed but not
// verifiable with keyfunc's key.
func VerifySET(token string, keyfunc jwt.Keyfunc) (*SmsOtpNotificationEvent, error) {
	if len(token) > maxTokenBytes {
		return nil, malformed("SET token of %d bytes, more than %d", len(token), maxTokenBytes)
	}
	if keyfunc == nil {
		return nil, errors.New("event: VerifySET without a keyfunc")
	}
	var claims setWireClaims
	_, err := jwt.ParseWithClaims(strings.TrimSpace(token), &claims, func(t *jwt.Token) (any, error) {
		if !isSETType(t.Header["typ"]) {
			return nil, errWrongTyp
		}
		return keyfunc(t)
	}, jwt.WithValidMethods([]string{AlgES256, AlgRS256}), jwt.WithJSONNumber())
	switch {
	case err == nil:
	case errors.Is(err, errWrongTyp):
		return nil, malformed("JWT typ is not %s", SETType)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, malformed("SET token: %v", err)
	default:
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return eventFromSET(&claims.setWire)
}

// ErrBadSignature is returned by VerifySET when the token's algorithm,
// key or signature is not acceptable.
var ErrBadSignature = errors.New("event: SET signature not verified")

var errWrongTyp = errors.New("wrong typ")

func isSETType(v any) bool {
	s, ok := v.(string)
	return ok && (strings.EqualFold(s, SETType) || strings.EqualFold(s, SETContentType))
}

// JWK is one public key of a JSON Web Key Set (RFC 7517): an EC P-256 or
// an RSA key.
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

// JWKS is a JSON Web Key Set, as served at /.well-known/jwks.json.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// NewJWK returns the public JWK of pub (an *ecdsa.PublicKey on P-256 or an
// *rsa.PublicKey) with kid, use "sig" and its algorithm.
func NewJWK(kid string, pub crypto.PublicKey) (JWK, error) {
	alg, err := AlgFor(pub)
	if err != nil {
		return JWK{}, err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		// AlgFor accepted only P-256: the point is 0x04 || X || Y, 32 bytes each.
		pt, err := k.Bytes()
		if err != nil || len(pt) != 65 {
			return JWK{}, fmt.Errorf("event: invalid P-256 public key: %v", err)
		}
		return JWK{Kty: "EC", Kid: kid, Use: "sig", Alg: alg, Crv: "P-256", X: b64(pt[1:33]), Y: b64(pt[33:])}, nil
	case *rsa.PublicKey:
		e := big.NewInt(int64(k.E)).Bytes()
		return JWK{Kty: "RSA", Kid: kid, Use: "sig", Alg: alg, N: b64(k.N.Bytes()), E: b64(e)}, nil
	}
	return JWK{}, fmt.Errorf("event: unsupported key type %T", pub)
}

// PublicKey returns the key k describes.
func (k JWK) PublicKey() (crypto.PublicKey, error) {
	dec := base64.RawURLEncoding.DecodeString
	switch k.Kty {
	case "EC":
		if k.Crv != "P-256" {
			return nil, fmt.Errorf("event: JWK %q: curve %q, want P-256", k.Kid, k.Crv)
		}
		x, errX := dec(k.X)
		y, errY := dec(k.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return nil, fmt.Errorf("event: JWK %q: malformed EC coordinates", k.Kid)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("event: JWK %q: point not on P-256", k.Kid)
		}
		return pub, nil
	case "RSA":
		n, errN := dec(k.N)
		e, errE := dec(k.E)
		if errN != nil || errE != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("event: JWK %q: malformed RSA modulus or exponent", k.Kid)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 || pub.E < 3 || pub.E%2 == 0 {
			return nil, fmt.Errorf("event: JWK %q: weak RSA key", k.Kid)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("event: JWK %q: unsupported kty %q", k.Kid, k.Kty)
}

// ParseJWKS decodes a JSON Web Key Set. Keys of types other than EC P-256
// and RSA are kept but never match in Keyfunc.
func ParseJWKS(b []byte) (*JWKS, error) {
	if len(b) > 1<<20 {
		return nil, malformed("JWKS larger than 1 MiB")
	}
	var set JWKS
	if err := unmarshalObject(b, &set); err != nil {
		return nil, malformed("JWKS: %v", err)
	}
	return &set, nil
}

// Keyfunc returns a jwt.Keyfunc that picks the key named by the token's
// "kid" header (required when the set holds more than one key) and
// refuses a key whose type or "alg" does not match the token's algorithm.
func (s *JWKS) Keyfunc() jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		alg, _ := t.Header["alg"].(string)
		var found *JWK
		for i := range s.Keys {
			k := &s.Keys[i]
			if k.Kid == kid || (kid == "" && len(s.Keys) == 1) {
				found = k
				break
			}
		}
		if found == nil {
			return nil, fmt.Errorf("event: no key %q in the JWKS", kid)
		}
		if found.Use != "" && found.Use != "sig" {
			return nil, fmt.Errorf("event: key %q is not a signing key", kid)
		}
		if found.Alg != "" && found.Alg != alg {
			return nil, fmt.Errorf("event: key %q is for %s, token uses %s", kid, found.Alg, alg)
		}
		pub, err := found.PublicKey()
		if err != nil {
			return nil, err
		}
		if want, err := AlgFor(pub); err != nil || want != alg {
			return nil, fmt.Errorf("event: key %q cannot verify %s", kid, alg)
		}
		return pub, nil
	}
}

// MarshalJWKS encodes set as JSON.
func MarshalJWKS(set *JWKS) ([]byte, error) { return json.Marshal(set) }
