package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lifeboat-update/lifeboat/pkg/chunk"
)

// Router reads chunks from the first of several stores that has them,
// failing over to the next store both when one lacks a chunk and when it
// fails. A Router is safe for concurrent use if its stores are.
type Router struct {
	stores []Store
}

var _ Store = (*Router)(nil)

// NewRouter returns a router over stores, tried in the order given.
func NewRouter(stores ...Store) *Router {
	return &Router{stores: append([]Store(nil), stores...)}
}

// String returns "router(A, B, …)".
func (r *Router) String() string {
	names := make([]string, len(r.stores))
	for i, s := range r.stores {
		names[i] = s.String()
	}
	return "router(" + strings.Join(names, ", ") + ")"
}

// Get returns chunk id from the first store that returns it. If every
// store lacks it, the error is a *NotFoundError naming the router.
// Otherwise it joins every store's error, each prefixed with the store's
// name; errors.Is(err, ErrNotFound) is then false, because at least one
// store failed without saying it lacks the chunk. A done ctx stops the
// search at once.
func (r *Router) Get(ctx context.Context, id chunk.ID) ([]byte, error) {
	var errs []error
	allNotFound := true
	for _, s := range r.stores {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%s: get chunk %s: %w", r, id, err)
		}
		b, err := s.Get(ctx, id)
		if err == nil {
			return b, nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("%s: get chunk %s: %w", r, id, cerr)
		}
		errs = append(errs, storeError(s, err))
		allNotFound = allNotFound && errors.Is(err, ErrNotFound)
	}
	if allNotFound {
		return nil, &NotFoundError{ID: id, Store: r.String()}
	}
	return nil, fmt.Errorf("get chunk %s: every store failed:\n%w", id, errors.Join(errs...))
}

// Has reports whether any store holds chunk id. It is false only when every
// store answers false; if none answers true and some fail, it returns their
// joined errors.
func (r *Router) Has(ctx context.Context, id chunk.ID) (bool, error) {
	var errs []error
	for _, s := range r.stores {
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("%s: has chunk %s: %w", r, id, err)
		}
		ok, err := s.Has(ctx, id)
		if ok && err == nil {
			return true, nil
		}
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return false, fmt.Errorf("%s: has chunk %s: %w", r, id, cerr)
			}
			errs = append(errs, storeError(s, err))
		}
	}
	if len(errs) > 0 {
		return false, fmt.Errorf("has chunk %s: %w", id, errors.Join(errs...))
	}
	return false, nil
}

// storeError prefixes err with the store's name. A not-found error is kept
// only as text: in a joined error beside real failures it must not make
// errors.Is(joined, ErrNotFound) hold.
func storeError(s Store, err error) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s: %s", s, err.Error())
	}
	return fmt.Errorf("%s: %w", s, err)
}
