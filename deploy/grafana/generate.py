#!/usr/bin/env python3
"""Writes deploy/grafana/otphub-dashboard.json.

The dashboard is generated so that every panel follows the same conventions
(datasource variable, namespace/job filters, units); edit this file and run
`python3 deploy/grafana/generate.py`, then commit both. deploy/dashboard_test.go
checks that the JSON parses, that every metric it queries is one otphub
exports, and that every otphub metric appears somewhere.
"""
import json
import os

SEL = 'namespace=~"$namespace", job=~"$job"'
RI = "$__rate_interval"

panels = []
_next_id = [1]
_y = [0]


def nid():
    i = _next_id[0]
    _next_id[0] += 1
    return i


def row(title):
    panels.append({
        "type": "row", "id": nid(), "title": title, "collapsed": False,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": _y[0]}, "panels": [],
    })
    _y[0] += 1


def target(expr, legend, ref):
    return {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": expr,
            "legendFormat": legend, "refId": ref, "range": True}


def place(panel_list, h):
    """Lays panels out left to right on one line of height h."""
    x = 0
    w = 24 // len(panel_list)
    for p in panel_list:
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": _y[0]}
        x += w
        panels.append(p)
    _y[0] += h


def timeseries(title, desc, targets, unit="short", stack=False, thresholds=None, min0=True):
    refs = "ABCDEFGH"
    p = {
        "type": "timeseries", "id": nid(), "title": title, "description": desc,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": [target(e, l, refs[i]) for i, (e, l) in enumerate(targets)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {
                    "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 40,
                    "showPoints": "never", "spanNulls": False,
                    "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                    "thresholdsStyle": {"mode": "line" if thresholds else "off"},
                },
                "thresholds": {"mode": "absolute", "steps": thresholds or [{"color": "green", "value": None}]},
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"], "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }
    if min0:
        p["fieldConfig"]["defaults"]["min"] = 0
    return p


def stat(title, desc, expr, unit="short", steps=None, decimals=None):
    p = {
        "type": "stat", "id": nid(), "title": title, "description": desc,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": [target(expr, "", "A")],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {"mode": "absolute", "steps": steps or [{"color": "green", "value": None}]},
                "color": {"mode": "thresholds"},
            },
            "overrides": [],
        },
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "area", "justifyMode": "auto", "textMode": "auto"},
    }
    if decimals is not None:
        p["fieldConfig"]["defaults"]["decimals"] = decimals
    return p


def steps(*pairs):
    out = [{"color": "green", "value": None}]
    for value, color in pairs:
        out.append({"color": color, "value": value})
    return out


FINAL = 'outcome=~"delivered|expired|dead|failed"'
LOST = 'outcome=~"expired|dead|failed"'

# Overview.
row("Overview")
place([
    stat("Events published", "Events accepted into the log per second (auth core and HTTP publishers).",
         f'sum(rate(otphub_events_published_total{{{SEL}}}[{RI}]))', unit="reqps"),
    stat("Delivered", "Deliveries answered 2xx per second.",
         f'sum(rate(otphub_deliveries_total{{{SEL}, outcome="delivered"}}[{RI}]))', unit="reqps"),
    stat("Lost deliveries", "Share of deliveries that ended expired, dead or failed (alert OtphubDeliveryFailureRateHigh at 5%).",
         f'sum(rate(otphub_deliveries_total{{{SEL}, {LOST}}}[{RI}])) / sum(rate(otphub_deliveries_total{{{SEL}, {FINAL}}}[{RI}]))',
         unit="percentunit", steps=steps((0.05, "orange"), (0.25, "red")), decimals=2),
    stat("p99 latency", "Issue-to-2xx latency, 99th percentile over every destination (alert at 30 s).",
         f'histogram_quantile(0.99, sum by (le) (rate(otphub_delivery_latency_seconds_bucket{{{SEL}}}[{RI}])))',
         unit="s", steps=steps((5, "orange"), (30, "red"))),
    stat("Pending retries", "Delivery tasks waiting for a retry (store-wide).",
         f'max(otphub_delivery_queue_depth{{{SEL}}})', steps=steps((100, "orange"), (1000, "red"))),
    stat("Oldest pending", "Age of the oldest pending retry; near the OTP expiry, retries end expired (alert at 180 s).",
         f'max(otphub_delivery_queue_oldest_age_seconds{{{SEL}}})', unit="s", steps=steps((60, "orange"), (180, "red"))),
    stat("Dead letters", "Deliveries that exhausted their retries, awaiting replay or purge.",
         f'max(otphub_dead_letters{{{SEL}}})', steps=steps((1, "orange"))),
    stat("Open circuits", "Endpoints whose circuit breaker is open (not attempted).",
         f'sum(otphub_circuit_breakers{{{SEL}, state="open"}})', steps=steps((1, "red"))),
], 4)

row("Publishing and delivery")
place([
    timeseries("Events published by source", "otphub_events_published_total: events accepted into the log, by source (authcore = issued by the auth core, http = POST /hub publish).",
               [(f'sum by (source) (rate(otphub_events_published_total{{{SEL}}}[{RI}]))', "{{source}}")], unit="reqps"),
    timeseries("Deliveries by outcome", "otphub_deliveries_total: delivered, retry_scheduled (each time a retry is scheduled), expired (the OTP expired first), dead (retries exhausted), failed (permanent error).",
               [(f'sum by (outcome) (rate(otphub_deliveries_total{{{SEL}}}[{RI}]))', "{{outcome}}")], unit="reqps", stack=True),
], 8)
place([
    timeseries("Deliveries by destination and outcome", "otphub_deliveries_total per destination type (webhook, twilio, vonage, custom, console).",
               [(f'sum by (destination, outcome) (rate(otphub_deliveries_total{{{SEL}}}[{RI}]))', "{{destination}} {{outcome}}")], unit="reqps"),
    timeseries("Lost share by destination", "Share of ended deliveries that were not delivered, per destination type (alerts at 5% and 25%).",
               [(f'sum by (destination) (rate(otphub_deliveries_total{{{SEL}, {LOST}}}[{RI}])) / sum by (destination) (rate(otphub_deliveries_total{{{SEL}, {FINAL}}}[{RI}]))', "{{destination}}")],
               unit="percentunit", thresholds=steps((0.05, "orange"), (0.25, "red"))),
], 8)
place([
    timeseries("Attempts by outcome", "otphub_delivery_attempts_total: each attempt ends success, retry (transient failure) or permanent.",
               [(f'sum by (destination, outcome) (rate(otphub_delivery_attempts_total{{{SEL}}}[{RI}]))', "{{destination}} {{outcome}}")], unit="reqps"),
    timeseries("Failure reasons", "otphub_delivery_failures_total: why attempts failed (timeout, connection, egress_refused, redirect, rate_limited, auth_error, client_error, server_error, gone, provider_refused, circuit_open, invalid).",
               [(f'sum by (destination, reason) (rate(otphub_delivery_failures_total{{{SEL}}}[{RI}])) > 0', "{{destination}} {{reason}}")], unit="reqps", stack=True),
    timeseries("Retries scheduled", "otphub_retries_scheduled_total: retries scheduled after a failed or refused attempt.",
               [(f'sum by (destination) (rate(otphub_retries_scheduled_total{{{SEL}}}[{RI}]))', "{{destination}}")], unit="reqps"),
], 8)

row("Latency")
place([
    timeseries("Issue-to-delivery latency", "otphub_delivery_latency_seconds: from the event's issue (iat) to the destination's 2xx, retries included.",
               [(f'histogram_quantile(0.5, sum by (le, destination) (rate(otphub_delivery_latency_seconds_bucket{{{SEL}}}[{RI}])))', "p50 {{destination}}"),
                (f'histogram_quantile(0.99, sum by (le, destination) (rate(otphub_delivery_latency_seconds_bucket{{{SEL}}}[{RI}])))', "p99 {{destination}}")],
               unit="s", thresholds=steps((30, "red"))),
    timeseries("Attempt duration", "otphub_delivery_attempt_duration_seconds: one HTTP attempt against a destination.",
               [(f'histogram_quantile(0.5, sum by (le, destination) (rate(otphub_delivery_attempt_duration_seconds_bucket{{{SEL}}}[{RI}])))', "p50 {{destination}}"),
                (f'histogram_quantile(0.99, sum by (le, destination) (rate(otphub_delivery_attempt_duration_seconds_bucket{{{SEL}}}[{RI}])))', "p99 {{destination}}")],
               unit="s"),
], 8)

row("Queue, log and circuits")
place([
    timeseries("Retry queue", "otphub_delivery_queue_depth: tasks pending a retry (store-wide, reported by every dispatcher; max shown).",
               [(f'max(otphub_delivery_queue_depth{{{SEL}}})', "pending")]),
    timeseries("Oldest pending retry", "otphub_delivery_queue_oldest_age_seconds: age of the oldest pending task. OtphubDeliveryBacklogExpiring fires above 180 s.",
               [(f'max(otphub_delivery_queue_oldest_age_seconds{{{SEL}}})', "oldest")], unit="s", thresholds=steps((180, "red"))),
    timeseries("Dead letters", "otphub_dead_letters: tasks on the dead-letter list (store-wide). OtphubDeadLettersIncreasing fires when it grows.",
               [(f'max(otphub_dead_letters{{{SEL}}})', "dead letters")]),
], 8)
place([
    timeseries("Consumer lag", "otphub_log_consumer_lag_records: records in the log not yet received by each dispatcher. OtphubConsumerLagGrowing fires when the total grows.",
               [(f'sum by (instance) (otphub_log_consumer_lag_records{{{SEL}}})', "{{instance}}"),
                (f'sum(otphub_log_consumer_lag_records{{{SEL}}})', "total")]),
    timeseries("Circuit breakers", "otphub_circuit_breakers: endpoints in use, by breaker state (summed over processes).",
               [(f'sum by (state) (otphub_circuit_breakers{{{SEL}}})', "{{state}}")], stack=True),
    timeseries("SSRF guard refusals", "otphub_egress_refused_total: callbacks refused by the SSRF guard at subscribe time or at dial time (DNS rebinding).",
               [(f'sum by (stage) (rate(otphub_egress_refused_total{{{SEL}}}[{RI}]))', "{{stage}}")], unit="reqps"),
], 8)

row("SMS OTP")
place([
    timeseries("Challenges and resends", "otphub_otp_challenges_started_total and otphub_otp_resends_total by outcome.",
               [(f'sum(rate(otphub_otp_challenges_started_total{{{SEL}}}[{RI}]))', "challenges started"),
                (f'sum by (outcome) (rate(otphub_otp_resends_total{{{SEL}}}[{RI}]))', "resend {{outcome}}")], unit="reqps"),
    timeseries("Verifications by result", "otphub_otp_verifications_total: verified, invalid_code, expired, too_many_attempts, backup_code.",
               [(f'sum by (result) (rate(otphub_otp_verifications_total{{{SEL}}}[{RI}]))', "{{result}}")], unit="reqps", stack=True),
    timeseries("Sends refused by abuse limits", "otphub_otp_send_limited_total: challenges or resends refused by the per-number, per-IP or per-org limits.",
               [(f'sum by (scope) (rate(otphub_otp_send_limited_total{{{SEL}}}[{RI}]))', "{{scope}}")], unit="reqps"),
], 8)

HS = "otphub_sms_handset_outcomes_total"
row("SMS delivery receipts")
place([
    stat("Handset delivery rate", "Share of SMS whose delivery receipts say the phone got them (delivered ÷ delivered, undelivered, failed, no_receipt). Alert OtphubSMSHandsetDeliveryRateDrop.",
         f'sum(rate({HS}{{{SEL}, outcome="delivered"}}[{RI}])) / sum(rate({HS}{{{SEL}}}[{RI}]))',
         unit="percentunit", steps=[{"color": "red", "value": None}, {"color": "orange", "value": 0.85}, {"color": "green", "value": 0.95}], decimals=1),
    stat("OTP conversion", "Verified OTPs ÷ OTP SMS accepted by a provider (otphub_sms_otp_verified_total ÷ otphub_sms_accepted_total).",
         f'sum(rate(otphub_sms_otp_verified_total{{{SEL}}}[{RI}])) / sum(rate(otphub_sms_accepted_total{{{SEL}}}[{RI}]))',
         unit="percentunit", decimals=1),
    stat("p90 receipt latency", "From the provider accepting an SMS to its final receipt, 90th percentile.",
         f'histogram_quantile(0.9, sum by (le) (rate(otphub_sms_receipt_latency_seconds_bucket{{{SEL}}}[{RI}])))', unit="s",
         steps=steps((30, "orange"), (60, "red"))),
    stat("Failovers", "SMS handed to the fallback provider after an undelivered or failed receipt, or no final receipt within the window.",
         f'sum(rate(otphub_sms_failovers_total{{{SEL}, outcome="sent"}}[{RI}]))', unit="reqps"),
], 4)
place([
    timeseries("Handset delivery rate by provider", "Delivered share of the SMS that ended, per provider.",
               [(f'sum by (provider) (rate({HS}{{{SEL}, outcome="delivered"}}[{RI}])) / sum by (provider) (rate({HS}{{{SEL}}}[{RI}]))', "{{provider}}")],
               unit="percentunit", thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 0.85}], min0=False),
    timeseries("Handset delivery by country", "Delivered share per country calling code (the 10 busiest).",
               [(f'sum by (country) (rate({HS}{{{SEL}, outcome="delivered"}}[{RI}])) / sum by (country) (rate({HS}{{{SEL}}}[{RI}])) and topk(10, sum by (country) (rate({HS}{{{SEL}}}[{RI}])))', "+{{country}}")],
               unit="percentunit", min0=False),
    timeseries("Handset outcomes", "otphub_sms_handset_outcomes_total: the first final state of each SMS (delivered, undelivered, failed) or no_receipt.",
               [(f'sum by (provider, outcome) (rate({HS}{{{SEL}}}[{RI}]))', "{{provider}} {{outcome}}")], unit="reqps", stack=True),
], 8)
place([
    timeseries("Receipt latency by provider", "otphub_sms_receipt_latency_seconds: provider acceptance to final receipt.",
               [(f'histogram_quantile(0.5, sum by (le, provider) (rate(otphub_sms_receipt_latency_seconds_bucket{{{SEL}}}[{RI}])))', "p50 {{provider}}"),
                (f'histogram_quantile(0.9, sum by (le, provider) (rate(otphub_sms_receipt_latency_seconds_bucket{{{SEL}}}[{RI}])))', "p90 {{provider}}")],
               unit="s"),
    timeseries("Receipt latency p90 by country", "90th percentile of receipt latency per country calling code.",
               [(f'histogram_quantile(0.9, sum by (le, country) (rate(otphub_sms_receipt_latency_seconds_bucket{{{SEL}}}[{RI}])))', "+{{country}}")],
               unit="s"),
    timeseries("OTP conversion by provider and country", "Verified ÷ accepted per provider and calling code.",
               [(f'sum by (provider, country) (rate(otphub_sms_otp_verified_total{{{SEL}}}[{RI}])) / sum by (provider, country) (rate(otphub_sms_accepted_total{{{SEL}}}[{RI}]))', "{{provider}} +{{country}}")],
               unit="percentunit"),
], 8)
place([
    timeseries("Failovers", "otphub_sms_failovers_total by the primary's provider, reason (undelivered, failed, no_receipt) and outcome (sent, no_fallback).",
               [(f'sum by (provider, reason, outcome) (rate(otphub_sms_failovers_total{{{SEL}}}[{RI}])) > 0', "{{provider}} {{reason}} {{outcome}}")], unit="reqps"),
    timeseries("Receipt callbacks", "otphub_sms_receipt_callbacks_total by result: applied, duplicate (retries, replays), forged, expired (stale signed timestamp), malformed, unknown_message, not_configured, error.",
               [(f'sum by (provider, result) (rate(otphub_sms_receipt_callbacks_total{{{SEL}}}[{RI}])) > 0', "{{provider}} {{result}}")], unit="reqps"),
], 8)

row("WebSub hub")
place([
    timeseries("Subscriptions by state", "otphub_websub_subscriptions: subscriptions by state (max over processes).",
               [(f'max by (state) (otphub_websub_subscriptions{{{SEL}}})', "{{state}}")]),
    timeseries("Intent verifications", "otphub_websub_intent_verifications_total: outcomes of the hub's GET to subscriber callbacks.",
               [(f'sum by (outcome) (rate(otphub_websub_intent_verifications_total{{{SEL}}}[{RI}]))', "{{outcome}}")], unit="reqps"),
], 8)

row("HTTP API")
place([
    timeseries("Requests by status class", "otphub_http_requests_total by status code class. OtphubHTTPErrorsHigh fires above 5% 5xx.",
               [(f'sum(rate(otphub_http_requests_total{{{SEL}, code=~"{c}.."}}[{RI}]))', f"{c}xx") for c in "2345"],
               unit="reqps", stack=True),
    timeseries("Requests by route", "otphub_http_requests_total by route pattern (top 10).",
               [(f'topk(10, sum by (route) (rate(otphub_http_requests_total{{{SEL}}}[{RI}])))', "{{route}}")], unit="reqps"),
    timeseries("Request duration p99 by route", "otphub_http_request_duration_seconds, 99th percentile per route pattern.",
               [(f'histogram_quantile(0.99, sum by (le, route) (rate(otphub_http_request_duration_seconds_bucket{{{SEL}}}[{RI}])))', "{{route}}")], unit="s"),
], 8)

dashboard = {
    "__inputs": [],
    "__requires": [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
        {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
    ],
    "annotations": {"list": [{
        "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
    }]},
    "description": "otphub: SMS OTP issuing, WebSub fan-out and provider delivery. See docs/operations.md for what each metric means.",
    "editable": True,
    "fiscalYearStartMonth": 0,
    "graphTooltip": 1,
    "id": None,
    "links": [{"title": "Operations guide", "type": "link", "url": "https://github.com/otphub/otphub/blob/main/docs/operations.md", "targetBlank": True}],
    "panels": panels,
    "refresh": "30s",
    "schemaVersion": 39,
    "tags": ["otphub", "sms", "otp"],
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "includeAll": False, "multi": False, "options": []},
        {"name": "namespace", "label": "Namespace", "type": "query",
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "definition": "label_values(otphub_http_requests_total, namespace)",
         "query": {"query": "label_values(otphub_http_requests_total, namespace)", "refId": "namespace"},
         "current": {}, "hide": 0, "refresh": 2, "regex": "", "sort": 1,
         "includeAll": True, "allValue": ".*", "multi": True, "options": []},
        {"name": "job", "label": "Job", "type": "query",
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "definition": 'label_values(otphub_http_requests_total{namespace=~"$namespace"}, job)',
         "query": {"query": 'label_values(otphub_http_requests_total{namespace=~"$namespace"}, job)', "refId": "job"},
         "current": {}, "hide": 0, "refresh": 2, "regex": "", "sort": 1,
         "includeAll": True, "allValue": ".*", "multi": True, "options": []},
    ]},
    "time": {"from": "now-6h", "to": "now"},
    "timepicker": {},
    "timezone": "",
    "title": "otphub",
    "uid": "otphub-overview",
    "version": 1,
    "weekStart": "",
}

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "otphub-dashboard.json")
with open(path, "w", encoding="utf-8") as f:
    json.dump(dashboard, f, indent=2, ensure_ascii=False)
    f.write("\n")
