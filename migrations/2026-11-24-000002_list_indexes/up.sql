-- Indexes of the contact list: one keyset index per sort, and a trigram index for `q`.
-- The btree indexes start with account_id, so a page reads one tenant's index range whatever
-- its depth.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Sorting by name is case-insensitive in code-point order, contacts without a name last; the key
-- is never null so that keyset pagination can use a row comparison on (key, id). The expression
-- must stay identical to repo::list::NAME_KEY.
CREATE INDEX contacts_name_idx
    ON contacts (account_id, (COALESCE(lower(name), chr(1114111)) COLLATE "C"), id);
CREATE INDEX contacts_created_idx ON contacts (account_id, created_at, id);
CREATE INDEX contacts_last_seen_idx ON contacts (account_id, last_seen_at, id);

-- `q`: case-insensitive substring of name, email or phone. The fields are joined with a newline,
-- which no field and no accepted `q` can contain, so a match never spans two fields. The
-- expression must stay identical to repo::list::SEARCH_TEXT. account_id is deliberately not in
-- this GIN index (btree_gin could add it): for a large account its posting list holds every row
-- and intersecting it doubled the search time at 1M contacts (2.9 ms vs 1.1 ms for a rare
-- term). Every search query still filters on account_id; rows of other accounts are rechecked
-- away on the heap.
CREATE INDEX contacts_search_idx ON contacts USING gin (
    (COALESCE(name, '') || E'\n' || COALESCE(email, '') || E'\n' || COALESCE(phone, '')) gin_trgm_ops
);
