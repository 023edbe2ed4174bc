#!/usr/bin/env bash
# The integration suite again, each test server spread over a 3-node
# cluster on a real redis-server: visitor sockets on one node, REST calls
# on another, agent sockets on the third (tests/common/cluster.rs, Spread).
#
# Skipped, because they do not make sense on a cluster:
# - tests that restart one server on its data directory and expect its
#   state back: in cluster mode that state lives in the harness's Redis,
#   which is not restarted with the node (cluster_tokens, cluster_faults and
#   cluster_confirmation cover restarts of nodes and of Redis);
# - tests that read a counter of the node that did the work (re-parks,
#   presence coalescing, registry stats) from the REST node's /metrics;
# - the single-node /healthz body (cluster_health covers the cluster's);
# - a_heartbeat_timeout_fails_an_invoke_whose_receipt_may_be_in_flight: its
#   page times out after 600 ms of silence, shorter than a cross-node invoke
#   can take to arrive on a loaded 2-core CI machine (it failed so once, and
#   passes alone); it also reads the re-park counter of the page's node.
#
# A read that follows a change made through a socket on another node
# waits for it to arrive (TestServer::once_seen); everything else is read
# at once.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESENCE_TEST_CLUSTER=3 cargo test --no-fail-fast \
  --test invoke --test watch --test one_core --test receipts --test agent_auth \
  --test confirmation --test confirmation_tickets --test session_keys \
  --test revocation --test identity --test visitor_socket --test origin \
  --test allow_list --test web --test sso --test credentials "$@" -- \
  --skip tokens_survive_a_restart \
  --skip a_confirmation_survives_navigation_and_a_restart \
  --skip the_denylist_survives_a_restart \
  --skip a_key_survives_a_restart_when_its_visitor_comes_back_within_the_grace_period \
  --skip a_group_removed_from_the_config_is_unknown_group_on_both_transports \
  --skip unknown_paths_and_methods_get_json_errors \
  --skip a_leaving_socket_gets_no_new_commands_but_still_delivers_results \
  --skip a_receiptless_close_reparks_the_invoke_for_the_next_socket \
  --skip the_deadline_covers_the_wait_across_a_repark \
  --skip a_heartbeat_timeout_fails_an_invoke_whose_receipt_may_be_in_flight
