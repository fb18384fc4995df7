DROP FUNCTION dispatch_advance(uuid[], text[], bigint[], int[], text[], text[], uuid, uuid[]);
