-- `keyline audit` at a million registrations (issue 11): the listing joins each registration to
-- its job device only for the platform; with the platform in the index, that join is an
-- index-only probe instead of a heap fetch per row.
CREATE INDEX job_devices_platform ON job_devices (job_id, device_id) INCLUDE (platform);

-- --check-store no longer merges a sorted listing of the store with the records (it looks paths
-- up by the store's unique key instead, in constant memory), so the C-collation order index of
-- 0004 only costs every escrow write.
DROP INDEX escrow_objects_store_key;
