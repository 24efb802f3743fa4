package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
)

func TestCacheOrgs(t *testing.T) {
	ctx := context.Background()
	raw, err := sqlite.Open(ctx, t.TempDir(), store.Options{EncryptionKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	st := store.CacheOrgs(raw)

	if _, err := st.GetOrg(ctx, "acme"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing org: %v", err)
	}
	created, err := st.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	// A miss is not cached: the org created since is found.
	got, err := st.GetOrg(ctx, "acme")
	if err != nil || got.ID != created.ID {
		t.Fatalf("after create: %+v %v", got, err)
	}
	// A hit is served from memory: it survives the database going away.
	raw.Close()
	if o, err := st.GetOrgByID(ctx, created.ID); err != nil || o.Name != "acme" {
		t.Fatalf("cached by id: %+v %v", o, err)
	}
	if o, err := st.GetOrg(ctx, "acme"); err != nil || o.ID != created.ID {
		t.Fatalf("cached by name: %+v %v", o, err)
	}
}
