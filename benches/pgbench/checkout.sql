-- One checkout (`POST /api/v1/orders`, docs/spec.md §4.2) as the SQL it sends to
-- PostgreSQL, for pgbench: the ceiling of `cargo bench --bench orders`.
--
-- The statements, their order and their transactions are those the service
-- sends for one order once the caller's session is cached, captured with
-- `BENCH_LOG_STATEMENTS=1` (log_statement = 'all'); only the values differ:
-- ids come from `bench_id(kind, run, client, n)` (created by the bench)
-- instead of fresh UUIDv7s, timestamps from now() instead of parameters.
-- What pgbench cannot send: the PaymentIntent call, and the round trip
-- (a bare Sync) with which sqlx tests every connection returned to its pool,
-- one per statement or transaction the service sends on its own (2 per
-- order); libpq has no pool, so the ceiling does not pay them.
--
-- Variables from the bench: run, seq (0), span (items per third of the
-- catalogue), users. Items are bench_id(10, 0, 0, n), users bench_id(11, 0, 0, n).

\set seq :seq + 1
\set u random(1, :users)
\set k random(1, 3)
\set i1 random(1, :span)
\set i2 :i1 + random(1, :span)
\set i3 :i2 + random(1, :span)
\set q1 random(1, 3)
\set q2 random(1, 3)
\set q3 random(1, 3)

-- 1. Claim the key and reserve, in one transaction: the key (a new one:
--    one INSERT … ON CONFLICT DO NOTHING), stock in item-id order, order,
--    lines, payment, timeline, expiry job, recovery point; read the
--    customer's Stripe id.
BEGIN;
INSERT INTO "idempotency_records" ("id", "scope", "key", "fingerprint", "state", "lease_token", "locked_until", "response_status", "response_body", "resource_id", "created_at", "expires_at") VALUES (bench_id(1, :run, :client_id, :seq), bench_id(11, 0, 0, :u)::text || ' POST /api/v1/orders', 'pgbench-' || :run::text || '-' || :client_id::text || '-' || :seq::text, 'a4c56dbe8b649feea617c395a71bbcc6c972877a29fd31f013a471eb9e9e858f', 'in_flight', bench_id(2, :run, :client_id, :seq), now() + interval '60 seconds', NULL, NULL, NULL, now(), now() + interval '1 day') ON CONFLICT ("scope", "key") DO NOTHING;
UPDATE "items" SET "stock" = "stock" - :q1, "updated_at" = now() WHERE "items"."id" = bench_id(10, 0, 0, :i1) AND "items"."deleted_at" IS NULL AND "items"."stock" >= :q1 RETURNING "id", "name", "name_search", "description", "price", "currency", "stock", "price_payment_id", "created_at", "updated_at", "deleted_at" \gset l1_
\set lt1 :l1_price * :q1
\set total :lt1
\if :k >= 2
UPDATE "items" SET "stock" = "stock" - :q2, "updated_at" = now() WHERE "items"."id" = bench_id(10, 0, 0, :i2) AND "items"."deleted_at" IS NULL AND "items"."stock" >= :q2 RETURNING "id", "name", "name_search", "description", "price", "currency", "stock", "price_payment_id", "created_at", "updated_at", "deleted_at" \gset l2_
\set lt2 :l2_price * :q2
\set total :total + :lt2
\endif
\if :k >= 3
UPDATE "items" SET "stock" = "stock" - :q3, "updated_at" = now() WHERE "items"."id" = bench_id(10, 0, 0, :i3) AND "items"."deleted_at" IS NULL AND "items"."stock" >= :q3 RETURNING "id", "name", "name_search", "description", "price", "currency", "stock", "price_payment_id", "created_at", "updated_at", "deleted_at" \gset l3_
\set lt3 :l3_price * :q3
\set total :total + :lt3
\endif
INSERT INTO "orders" ("id", "user_id", "status", "currency", "total", "tracking_number", "carrier", "shipped_at", "delivered_at", "canceled_at", "refunded_at", "expires_at", "deleted_at", "created_at", "updated_at") VALUES (bench_id(3, :run, :client_id, :seq), bench_id(11, 0, 0, :u), 'PENDING', 'usd', :total, NULL, NULL, NULL, NULL, NULL, NULL, now() + interval '30 minutes', NULL, now(), now());
\if :k = 1
INSERT INTO "order_lines" ("id", "order_id", "item_id", "item_name", "unit_price", "quantity", "line_total") VALUES (bench_id(4, :run, :client_id, :seq), bench_id(3, :run, :client_id, :seq), bench_id(10, 0, 0, :i1), :l1_name, :l1_price, :q1, :lt1);
\elif :k = 2
INSERT INTO "order_lines" ("id", "order_id", "item_id", "item_name", "unit_price", "quantity", "line_total") VALUES (bench_id(4, :run, :client_id, :seq), bench_id(3, :run, :client_id, :seq), bench_id(10, 0, 0, :i1), :l1_name, :l1_price, :q1, :lt1), (bench_id(5, :run, :client_id, :seq), bench_id(3, :run, :client_id, :seq), bench_id(10, 0, 0, :i2), :l2_name, :l2_price, :q2, :lt2);
\else
INSERT INTO "order_lines" ("id", "order_id", "item_id", "item_name", "unit_price", "quantity", "line_total") VALUES (bench_id(4, :run, :client_id, :seq), bench_id(3, :run, :client_id, :seq), bench_id(10, 0, 0, :i1), :l1_name, :l1_price, :q1, :lt1), (bench_id(5, :run, :client_id, :seq), bench_id(3, :run, :client_id, :seq), bench_id(10, 0, 0, :i2), :l2_name, :l2_price, :q2, :lt2), (bench_id(6, :run, :client_id, :seq), bench_id(3, :run, :client_id, :seq), bench_id(10, 0, 0, :i3), :l3_name, :l3_price, :q3, :lt3);
\endif
INSERT INTO "payments" ("id", "order_id", "provider", "provider_payment_id", "client_secret", "amount", "currency", "status", "created_at", "updated_at") VALUES (bench_id(7, :run, :client_id, :seq), bench_id(3, :run, :client_id, :seq), 'simulated', NULL, NULL, :total, 'usd', 'creating', now(), now());
INSERT INTO "order_events" ("id", "order_id", "from_status", "to_status", "actor", "reason", "at") VALUES (bench_id(8, :run, :client_id, :seq), bench_id(3, :run, :client_id, :seq), NULL, 'PENDING', bench_id(11, 0, 0, :u)::text, NULL, now());
WITH inserted AS (INSERT INTO "jobs" ("id", "queue", "kind", "payload", "state", "priority", "attempt", "max_attempts", "run_at", "lease_owner", "lease_expires_at", "last_error", "errors", "correlation_id", "unique_key", "created_at", "updated_at", "started_at", "finished_at") VALUES (bench_id(9, :run, :client_id, :seq), 'orders', 'order.expire', jsonb_build_object('orderId', bench_id(3, :run, :client_id, :seq)), 'scheduled', 0, 0, 3, now() + interval '30 minutes', NULL, NULL, NULL, '[]', bench_id(12, :run, :client_id, :seq)::text, 'order.expire:' || bench_id(3, :run, :client_id, :seq)::text, now(), now(), NULL, NULL) ON CONFLICT DO NOTHING RETURNING "id", "queue", "state") SELECT inserted.id, CASE WHEN inserted.state = 'available' THEN pg_notify('dispatch_jobs', inserted.queue) END AS notified FROM inserted;
UPDATE "idempotency_records" SET "resource_id" = bench_id(3, :run, :client_id, :seq) WHERE "idempotency_records"."id" = bench_id(1, :run, :client_id, :seq) AND "idempotency_records"."lease_token" = bench_id(2, :run, :client_id, :seq) AND "idempotency_records"."state" = 'in_flight';
SELECT "users"."stripe_customer_id" FROM "users" WHERE "users"."id" = bench_id(11, 0, 0, :u) LIMIT 1;
COMMIT;

-- The PaymentIntent call happens here.

-- 2. Attach the PaymentIntent, notify order.created, complete the key with
--    the response (about 1 KB of JSON).
BEGIN;
UPDATE "payments" SET "provider_payment_id" = 'pi_sim_' || bench_id(7, :run, :client_id, :seq)::text, "client_secret" = 'pi_sim_' || bench_id(7, :run, :client_id, :seq)::text || '_secret_0123456789abcdef0123456789abcdef', "status" = 'requires_payment', "updated_at" = now() WHERE "payments"."order_id" = bench_id(3, :run, :client_id, :seq) AND "payments"."provider_payment_id" IS NULL RETURNING "id", "order_id", "provider", "provider_payment_id", "client_secret", "amount", "currency", "status", "created_at", "updated_at";
WITH inserted AS (INSERT INTO "jobs" ("id", "queue", "kind", "payload", "state", "priority", "attempt", "max_attempts", "run_at", "lease_owner", "lease_expires_at", "last_error", "errors", "correlation_id", "unique_key", "created_at", "updated_at", "started_at", "finished_at") VALUES (bench_id(13, :run, :client_id, :seq), 'notifications', 'notification.deliver', jsonb_build_object('data', jsonb_build_object('total', :total::bigint, 'status', 'PENDING', 'orderId', bench_id(3, :run, :client_id, :seq), 'currency', 'usd'), 'event', 'order.created', 'userId', bench_id(11, 0, 0, :u)), 'available', 0, 0, 3, now(), NULL, NULL, NULL, '[]', bench_id(12, :run, :client_id, :seq)::text, NULL, now(), now(), NULL, NULL) ON CONFLICT DO NOTHING RETURNING "id", "queue", "state") SELECT inserted.id, CASE WHEN inserted.state = 'available' THEN pg_notify('dispatch_jobs', inserted.queue) END AS notified FROM inserted;
UPDATE "idempotency_records" SET "state" = 'completed', "response_status" = 201, "response_body" = repeat('x', 1047), "lease_token" = NULL, "locked_until" = NULL WHERE "idempotency_records"."id" = bench_id(1, :run, :client_id, :seq) AND "idempotency_records"."lease_token" = bench_id(2, :run, :client_id, :seq) AND "idempotency_records"."state" = 'in_flight';
COMMIT;
