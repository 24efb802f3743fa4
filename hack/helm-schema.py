#!/usr/bin/env python3
"""Writes charts/otphub/values.schema.json.

The schema is kept here as Python so it can reuse definitions; run
`python3 hack/helm-schema.py` after changing values.yaml and commit both.
hack/helm.sh fails when the committed schema differs from this output.
"""
import json
import os
import sys

def obj(props, required=(), extra=False, desc=None):
    o = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        o["required"] = list(required)
    if desc:
        o["description"] = desc
    return o

def s(desc=None, **kw):
    o = {"type": "string", **kw}
    if desc:
        o["description"] = desc
    return o

def b(desc=None):
    o = {"type": "boolean"}
    if desc:
        o["description"] = desc
    return o

def i(minimum=None, maximum=None, desc=None, nullable=False):
    o = {"type": ["integer", "null"] if nullable else "integer"}
    if minimum is not None:
        o["minimum"] = minimum
    if maximum is not None:
        o["maximum"] = maximum
    if desc:
        o["description"] = desc
    return o

def arr(items, desc=None, **kw):
    o = {"type": "array", "items": items, **kw}
    if desc:
        o["description"] = desc
    return o

ANY_OBJ = {"type": "object"}  # a Kubernetes structure passed through as is
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
DURATION = s(pattern=r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
PROM_DURATION = s(pattern=r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")
QUANTITY = {"type": ["string", "integer", "number"], "pattern": r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"}
RESOURCES = obj({
    "requests": {"type": "object", "additionalProperties": QUANTITY},
    "limits": {"type": "object", "additionalProperties": QUANTITY},
    "claims": arr(ANY_OBJ),
}, desc="Kubernetes ResourceRequirements")
INT_OR_PERCENT = {"type": ["integer", "string"], "pattern": r"^[0-9]+%$", "minimum": 0}
CIDR = s(pattern=r"^[0-9a-fA-F:.]+/[0-9]{1,3}$")
# A --otp-limit-* budget: N/duration (N sends per fixed window), or 0 (off).
SEND_LIMIT = {"type": ["string", "integer"], "pattern": r"^0$|^[0-9]+/([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", "minimum": 0, "maximum": 0}
HOSTPORT = s(pattern=r"^[^\s:/]+:[0-9]{1,5}$|^\[[0-9a-fA-F:]+\]:[0-9]{1,5}$")

def autoscaling(max_default=10):
    return obj({
        "enabled": b(),
        "minReplicas": i(1),
        "maxReplicas": i(1),
        "targetCPUUtilizationPercentage": i(1, 1000, nullable=True),
        "targetMemoryUtilizationPercentage": i(1, 1000, nullable=True),
    }, required=["enabled", "minReplicas", "maxReplicas"])

def role():
    return obj({
        "replicaCount": i(0),
        "resources": RESOURCES,
        "autoscaling": autoscaling(),
    }, required=["replicaCount", "resources", "autoscaling"])

def probe():
    return obj({
        "initialDelaySeconds": i(0),
        "periodSeconds": i(1),
        "timeoutSeconds": i(1),
        "failureThreshold": i(1),
        "successThreshold": i(1),
    })

schema = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "otphub chart values",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "global": {"type": "object", "description": "Helm global values (from a parent chart)"},
        "nameOverride": s(maxLength=52),
        "fullnameOverride": s(maxLength=52),
        "image": obj({
            "repository": s(minLength=1),
            "tag": s(),
            "digest": s(pattern=r"^$|^sha256:[a-f0-9]{64}$"),
            "pullPolicy": s(enum=["Always", "IfNotPresent", "Never"]),
        }, required=["repository", "pullPolicy"]),
        "imagePullSecrets": arr(s(minLength=1), desc="names of image pull Secrets"),
        "publicURL": s(pattern=r"^$|^https?://[^/?#\s]+(/[^?#\s]*)?$"),
        "config": obj({
            "logLevel": s(enum=["debug", "info", "warn", "error"]),
            "egressAllowCIDRs": arr(CIDR),
            "trustProxyHeaders": b(),
            "allowConsoleProvider": b(),
            "consoleSignInOrg": s(pattern=r"^$|^[a-z0-9][a-z0-9-]{0,62}$"),
            "shutdownTimeout": DURATION,
            "logRetention": DURATION,
            "deliveryMaxAttempts": i(1, 100),
            "deliveryTimeout": DURATION,
            "endpointConcurrency": i(1, 1000),
            "hostConcurrency": i(0, 100000),
            "maxPendingPerDestination": i(0, 10000000),
            "maxLogWait": s(pattern=r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"),
            "otpLimitPerNumber": SEND_LIMIT,
            "otpLimitPerIP": SEND_LIMIT,
            "otpLimitPerOrg": SEND_LIMIT,
            "otpMaxInFlight": i(0, 100000),
            "otpMaxQueueWait": s(pattern=r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"),
            "receiptWindow": s(pattern=r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"),
        }, required=["logLevel", "shutdownTimeout", "deliveryMaxAttempts", "deliveryTimeout", "endpointConcurrency", "hostConcurrency", "maxPendingPerDestination", "maxLogWait",
                     "otpLimitPerNumber", "otpLimitPerIP", "otpLimitPerOrg", "otpMaxInFlight", "otpMaxQueueWait", "receiptWindow"]),
        "extraEnv": arr(obj({"name": s(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"), "value": s(), "valueFrom": ANY_OBJ}, required=["name"])),
        "extraEnvFrom": arr(ANY_OBJ),
        "extraArgs": arr(s()),
        "replicaCount": i(0),
        "roles": obj({
            "split": b(),
            "authcore": role(),
            "hub": role(),
            "dispatcher": role(),
        }, required=["split", "authcore", "hub", "dispatcher"]),
        "resources": RESOURCES,
        "autoscaling": autoscaling(),
        "podDisruptionBudget": obj({
            "enabled": b(),
            "maxUnavailable": {**INT_OR_PERCENT, "type": ["integer", "string", "null"]},
            "minAvailable": {**INT_OR_PERCENT, "type": ["integer", "string", "null"]},
        }, required=["enabled"]),
        "externalDatabase": obj({
            "enabled": b(),
            "url": s(pattern=r"^$|^postgres(ql)?://"),
            "host": s(),
            "port": i(1, 65535),
            "user": s(),
            "password": s(),
            "database": s(),
            "sslmode": s(enum=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
        }, required=["enabled"]),
        "externalKafka": obj({
            "enabled": b(),
            "brokers": arr(HOSTPORT),
            "clientId": s(minLength=1),
            "partitions": i(1, 10000),
            "replicationFactor": i(1, 100),
            "sessionTimeout": DURATION,
            "tls": obj({
                "enabled": b(),
                "caSecret": obj({"name": s(), "key": s(minLength=1)}, required=["name", "key"]),
            }, required=["enabled"]),
            "sasl": obj({
                "enabled": b(),
                "mechanism": s(enum=["plain", "scram-sha-256", "scram-sha-512"]),
                "username": s(),
                "password": s(),
            }, required=["enabled", "mechanism"]),
        }, required=["enabled"]),
        "secrets": obj({
            "adminClientId": s(minLength=1, maxLength=200),
            "adminClientSecret": s(maxLength=200),
            "encryptionKey": s(pattern=r"^$|^[A-Za-z0-9+/]{43}=$|^[A-Za-z0-9_-]{43}=?$|^[0-9a-fA-F]{64}$",
                              description="32 bytes, base64 (44 characters) or hex (64 characters)"),
            "nextEncryptionKey": s(pattern=r"^$|^[A-Za-z0-9+/]{43}=$|^[A-Za-z0-9_-]{43}=?$|^[0-9a-fA-F]{64}$",
                                  description="32 bytes, base64 (44 characters) or hex (64 characters)"),
            "previousEncryptionKeys": arr(s(pattern=r"^[A-Za-z0-9+/]{43}=$|^[A-Za-z0-9_-]{43}=?$|^[0-9a-fA-F]{64}$",
                                            description="32 bytes, base64 (44 characters) or hex (64 characters)")),
            "keepOnUninstall": b(),
        }, required=["adminClientId"]),
        "existingSecret": s(),
        "persistence": obj({
            "enabled": b(),
            "existingClaim": s(),
            "storageClass": s(),
            "accessModes": arr(s(enum=["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany", "ReadOnlyMany"]), minItems=1),
            "size": QUANTITY,
            "annotations": STR_MAP,
            "keepOnUninstall": b(),
        }, required=["enabled"]),
        "service": obj({
            "type": s(enum=["ClusterIP", "NodePort", "LoadBalancer"]),
            "port": i(1, 65535),
            "annotations": STR_MAP,
        }, required=["type", "port"]),
        "ingress": obj({
            "enabled": b(),
            "className": s(),
            "annotations": STR_MAP,
            "hosts": arr(obj({
                "host": s(minLength=1),
                "paths": arr(obj({
                    "path": s(pattern=r"^/"),
                    "pathType": s(enum=["Prefix", "Exact", "ImplementationSpecific"]),
                }, required=["path", "pathType"]), minItems=1),
            }, required=["host", "paths"])),
            "tls": arr(obj({"secretName": s(), "hosts": arr(s())}, required=["hosts"])),
        }, required=["enabled"]),
        "serviceAccount": obj({
            "create": b(),
            "name": s(),
            "annotations": STR_MAP,
        }, required=["create"]),
        "podAnnotations": STR_MAP,
        "podLabels": STR_MAP,
        "podSecurityContext": ANY_OBJ,
        "securityContext": ANY_OBJ,
        "tmpSizeLimit": QUANTITY,
        "terminationGracePeriodSeconds": i(0),
        "livenessProbe": probe(),
        "readinessProbe": probe(),
        "startupProbe": probe(),
        "defaultTopologySpread": b(),
        "topologySpreadConstraints": arr(ANY_OBJ),
        "affinity": ANY_OBJ,
        "nodeSelector": STR_MAP,
        "tolerations": arr(ANY_OBJ),
        "priorityClassName": s(),
        "serviceMonitor": obj({
            "enabled": b(),
            "namespace": s(),
            "labels": STR_MAP,
            "interval": PROM_DURATION,
            "scrapeTimeout": PROM_DURATION,
            "honorLabels": b(),
            "relabelings": arr(ANY_OBJ),
            "metricRelabelings": arr(ANY_OBJ),
        }, required=["enabled"]),
        "prometheusRule": obj({
            "enabled": b(),
            "namespace": s(),
            "labels": STR_MAP,
            "job": s(minLength=1),
        }, required=["enabled"]),
        "grafanaDashboard": obj({
            "enabled": b(),
            "namespace": s(),
            "labels": STR_MAP,
            "annotations": STR_MAP,
        }, required=["enabled"]),
        "networkPolicy": obj({
            "enabled": b(),
            "ingress": obj({"from": arr(ANY_OBJ)}),
            "egress": obj({
                "enabled": b(),
                "dnsTo": arr(ANY_OBJ),
                "databaseTo": arr(ANY_OBJ),
                "databasePort": i(1, 65535),
                "kafkaTo": arr(ANY_OBJ),
                "webhookPorts": arr(i(1, 65535)),
                "webhookExceptCIDRs": arr(CIDR),
                "extraRules": arr(ANY_OBJ),
            }),
        }, required=["enabled"]),
        "tests": obj({
            "image": obj({
                "repository": s(minLength=1),
                "tag": s(minLength=1),
                "pullPolicy": s(enum=["Always", "IfNotPresent", "Never"]),
            }, required=["repository", "tag"]),
        }),
    },
}

out = json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "charts", "otphub", "values.schema.json")
if len(sys.argv) > 1 and sys.argv[1] == "--check":
    with open(path, encoding="utf-8") as f:
        if f.read() != out:
            sys.exit("charts/otphub/values.schema.json is stale: run python3 hack/helm-schema.py")
    sys.exit(0)
with open(path, "w", encoding="utf-8") as f:
    f.write(out)
