package event

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// The encrypted Asgardeo body, as the Asgardeo trigger for Ballerina
// (ballerinax/trigger.asgardeo) decrypts it: its DispatcherService first
// tries to read the content as {iss, jti, iat, aud, event: {payload,
// payloadCryptoKey, ivParameterSpec}} and, when that fits, decrypts
// (ballerina-platform/asyncapi-triggers, asyncapi/asgardeo/dispatcher_service.bal
// decryptEvent, native/asgardeo/src/main/java/io/crypto/Decryption.java):
//
//   - payloadCryptoKey: base64 of the AES key encrypted with the org's RSA
//     key, Java's Cipher "RSA" (RSA/ECB/PKCS1Padding); the trigger
//     decrypts it with the PKCS#8 private key its key service returned and
//     base64-encodes the result, which is the AES key;
//   - payload: base64 of AES/GCM/NoPadding ciphertext with the 128-bit tag
//     appended (Java's layout) of the JSON event object,
//     {"urn:ietf:params:notifications:smsOtp": {…}};
//   - ivParameterSpec: base64 of the GCM nonce.
//
// iss, jti, iat and aud stay in clear, as the trigger reads them from the
// outer body. A fresh AES-256 key and 96-bit nonce are drawn per body.

// EncryptedEventDetail is the "event" member of an encrypted Asgardeo body.
type EncryptedEventDetail struct {
	Payload          string `json:"payload"`
	PayloadCryptoKey string `json:"payloadCryptoKey"`
	IVParameterSpec  string `json:"ivParameterSpec"`
}

type encryptedAsgardeoBody struct {
	Issuer   string               `json:"iss"`
	ID       string               `json:"jti"`
	IssuedAt int64                `json:"iat"`
	Audience string               `json:"aud"`
	Event    EncryptedEventDetail `json:"event"`
}

// MarshalAsgardeoEncrypted encodes ev as the encrypted Asgardeo body for
// the holder of pub's private key.
func MarshalAsgardeoEncrypted(ev *SmsOtpNotificationEvent, pub *rsa.PublicKey) ([]byte, error) {
	if pub == nil {
		return nil, errors.New("event: encrypted asgardeo body: no key")
	}
	plain, err := marshalJSON(asgardeoEvents{SmsOtp: dataOf(ev)})
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	nonce := make([]byte, 12)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	_, _ = rand.Read(nonce)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	//lint:ignore SA1019 the trigger decrypts with Java's "RSA" cipher, PKCS #1 v1.5; only the subscriber decrypts, so otphub is no padding oracle
	sealedKey, err := rsa.EncryptPKCS1v15(rand.Reader, pub, key)
	if err != nil {
		return nil, fmt.Errorf("event: encrypt the payload key: %w", err)
	}
	return marshalJSON(encryptedAsgardeoBody{
		Issuer:   ev.Issuer,
		ID:       ev.ID,
		IssuedAt: ev.IssuedAt.UnixMilli(),
		Audience: ev.Audience,
		Event: EncryptedEventDetail{
			Payload:          base64.StdEncoding.EncodeToString(gcm.Seal(nil, nonce, plain, nil)),
			PayloadCryptoKey: base64.StdEncoding.EncodeToString(sealedKey),
			IVParameterSpec:  base64.StdEncoding.EncodeToString(nonce),
		},
	})
}

// DecryptAsgardeoEvent reverses MarshalAsgardeoEncrypted's "event" member
// the way the trigger does and returns the JSON event object. Tests and
// Go receivers use it.
func DecryptAsgardeoEvent(d EncryptedEventDetail, priv *rsa.PrivateKey) (json.RawMessage, error) {
	sealedKey, err := base64.StdEncoding.DecodeString(d.PayloadCryptoKey)
	if err != nil {
		return nil, fmt.Errorf("event: payloadCryptoKey: %w", err)
	}
	//lint:ignore SA1019 the trigger's scheme (see MarshalAsgardeoEncrypted)
	key, err := rsa.DecryptPKCS1v15(nil, priv, sealedKey)
	if err != nil {
		return nil, fmt.Errorf("event: payloadCryptoKey: %w", err)
	}
	nonce, err := base64.StdEncoding.DecodeString(d.IVParameterSpec)
	if err != nil {
		return nil, fmt.Errorf("event: ivParameterSpec: %w", err)
	}
	ct, err := base64.StdEncoding.DecodeString(d.Payload)
	if err != nil {
		return nil, fmt.Errorf("event: payload: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("event: payload key: %w", err)
	}
	gcm, err := cipher.NewGCMWithNonceSize(block, len(nonce))
	if err != nil {
		return nil, fmt.Errorf("event: ivParameterSpec: %w", err)
	}
	plain, err := gcm.Open(nil, nonce, ct, nil)
	if err != nil {
		return nil, fmt.Errorf("event: payload: %w", err)
	}
	return plain, nil
}
