-- A streaming run's row is rewritten by every checkpoint (twice a second): room left
-- on each page lets PostgreSQL put the new version beside the old one as a heap-only
-- update, with no new entry in any of the table's indexes. Most checkpoints leave
-- every indexed column as it is (the lease is renewed only once a sixth of it has
-- passed), so only the page's room decides. Pages written from now on keep a fifth
-- free.
ALTER TABLE runs SET (fillfactor = 80);
