"""The cloud SDKs, unchanged, against a running vodkms KMS (tests/cloud_sdks.rs).

Each SDK is pointed at the KMS by endpoint and credentials only. Every check
raises on failure; the process exits non-zero with the first failure. Reads
its settings from the VODKMS_SDK_CONFIG environment variable (JSON):

  host          127.0.0.1:PORT of the KMS
  key_alias     alias/... of a key the "good" access key may use
  key_arn       that key's ARN
  other_key     a key id no limited client may use
  access_keys   {name: [AccessKeyId, SecretAccessKey]} for good, wrong_secret,
                deleted, revoked, decrypt_only, limited
  workdir       a scratch folder
"""

import base64
import json
import os
import subprocess
import sys

CONFIG = json.loads(os.environ["VODKMS_SDK_CONFIG"])
HOST = CONFIG["host"]
URL = "http://" + HOST
ALIAS = CONFIG["key_alias"]
KEY_ARN = CONFIG["key_arn"]
OTHER_KEY = CONFIG["other_key"]
KEYS = CONFIG["access_keys"]
WORK = CONFIG["workdir"]
CHECKS = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    CHECKS.append(what)


class SdkError(Exception):
    def __init__(self, code, status):
        super().__init__(f"{code} (HTTP {status})")
        self.code = code
        self.status = status


# --- one adapter per SDK: generate, decrypt, encrypt; errors as SdkError ---


class Aws:
    name = "boto3"

    def __init__(self, key):
        import boto3
        from botocore.config import Config

        self.client = boto3.client(
            "kms",
            endpoint_url=URL,
            region_name="us-east-1",
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    def call(self, op, **kw):
        from botocore.exceptions import ClientError

        try:
            return getattr(self.client, op)(**kw)
        except ClientError as e:
            raise SdkError(e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])

    def generate(self, spec, ctx):
        kw = {"NumberOfBytes": spec} if isinstance(spec, int) else {"KeySpec": spec}
        r = self.call("generate_data_key", KeyId=ALIAS, EncryptionContext=ctx, **kw)
        check(r["KeyId"] == KEY_ARN, "boto3: GenerateDataKey answers the key ARN")
        return r["Plaintext"], r["CiphertextBlob"]

    def decrypt(self, blob, ctx):
        return self.call("decrypt", CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"]

    def encrypt(self, data, ctx):
        return self.call("encrypt", KeyId=KEY_ARN, Plaintext=data, EncryptionContext=ctx)["CiphertextBlob"]

    def re_encrypt(self, blob, source_ctx, dest_ctx):
        return self.call(
            "re_encrypt", CiphertextBlob=blob, SourceEncryptionContext=source_ctx,
            DestinationKeyId=ALIAS, DestinationEncryptionContext=dest_ctx,
        )["CiphertextBlob"]

    def without_plaintext(self, ctx):
        r = self.call("generate_data_key_without_plaintext", KeyId=ALIAS, KeySpec="AES_256", EncryptionContext=ctx)
        check("Plaintext" not in r, "boto3: GenerateDataKeyWithoutPlaintext has no Plaintext")
        return r["CiphertextBlob"]


class Tencent:
    name = "tencentcloud-sdk-python"

    def __init__(self, key):
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.kms.v20190118 import kms_client, models

        hp = HttpProfile(endpoint=HOST)
        hp.scheme = "http"
        self.models = models
        self.client = kms_client.KmsClient(
            credential.Credential(key[0], key[1]), "ap-guangzhou", ClientProfile(httpProfile=hp)
        )

    def call(self, op, **params):
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

        req = getattr(self.models, op + "Request")()
        req.from_json_string(json.dumps(params))
        try:
            return getattr(self.client, op)(req)
        except TencentCloudSDKException as e:
            # Tencent Cloud answers errors with HTTP 200; any other status is
            # the SDK's ServerNetworkError.
            raise SdkError(e.get_code(), 200 if e.get_code() != "ServerNetworkError" else 500)

    def generate(self, spec, ctx):
        kw = {"NumberOfBytes": spec} if isinstance(spec, int) else {"KeySpec": spec}
        r = self.call("GenerateDataKey", KeyId=ALIAS, EncryptionContext=json.dumps(ctx), **kw)
        return base64.b64decode(r.Plaintext), base64.b64decode(r.CiphertextBlob)

    def decrypt(self, blob, ctx):
        r = self.call("Decrypt", CiphertextBlob=base64.b64encode(blob).decode(), EncryptionContext=json.dumps(ctx))
        return base64.b64decode(r.Plaintext)

    def encrypt(self, data, ctx):
        r = self.call("Encrypt", KeyId=ALIAS, Plaintext=base64.b64encode(data).decode(), EncryptionContext=json.dumps(ctx))
        return base64.b64decode(r.CiphertextBlob)

    def re_encrypt(self, blob, source_ctx, dest_ctx):
        r = self.call(
            "ReEncrypt", CiphertextBlob=base64.b64encode(blob).decode(), DestinationKeyId=ALIAS,
            SourceEncryptionContext=json.dumps(source_ctx), DestinationEncryptionContext=json.dumps(dest_ctx),
        )
        return base64.b64decode(r.CiphertextBlob)


class Alibaba:
    name = "alibabacloud-kms20160120"

    def __init__(self, key):
        from alibabacloud_kms20160120 import models
        from alibabacloud_kms20160120.client import Client
        from alibabacloud_tea_openapi import models as open_api_models

        self.models = models
        self.client = Client(
            open_api_models.Config(
                access_key_id=key[0],
                access_key_secret=key[1],
                endpoint=HOST,
                protocol="http",
                region_id="cn-hangzhou",
            )
        )

    def call(self, op, request):
        try:
            return getattr(self.client, op)(request).body
        except Exception as e:  # TeaException and its subclasses
            code = getattr(e, "code", None)
            if code is None:
                raise
            data = getattr(e, "data", None) or {}
            status = getattr(e, "status_code", None) or getattr(e, "statusCode", None) or data.get("statusCode")
            raise SdkError(code, status)

    def generate(self, spec, ctx):
        kw = {"number_of_bytes": spec} if isinstance(spec, int) else {"key_spec": spec}
        r = self.call("generate_data_key", self.models.GenerateDataKeyRequest(key_id=ALIAS, encryption_context=ctx, **kw))
        return base64.b64decode(r.plaintext), base64.b64decode(r.ciphertext_blob)

    def decrypt(self, blob, ctx):
        r = self.call(
            "decrypt",
            self.models.DecryptRequest(ciphertext_blob=base64.b64encode(blob).decode(), encryption_context=ctx),
        )
        return base64.b64decode(r.plaintext)

    def encrypt(self, data, ctx):
        r = self.call(
            "encrypt",
            self.models.EncryptRequest(key_id=ALIAS, plaintext=base64.b64encode(data).decode(), encryption_context=ctx),
        )
        return base64.b64decode(r.ciphertext_blob)

    def re_encrypt(self, blob, source_ctx, dest_ctx):
        r = self.call(
            "re_encrypt",
            self.models.ReEncryptRequest(
                ciphertext_blob=base64.b64encode(blob).decode(), destination_key_id=ALIAS,
                source_encryption_context=source_ctx, destination_encryption_context=dest_ctx,
            ),
        )
        return base64.b64decode(r.ciphertext_blob)

    def without_plaintext(self, ctx):
        r = self.call(
            "generate_data_key_without_plaintext",
            self.models.GenerateDataKeyWithoutPlaintextRequest(key_id=ALIAS, encryption_context=ctx),
        )
        check(getattr(r, "plaintext", None) is None, "alibaba: GenerateDataKeyWithoutPlaintext has no Plaintext")
        return base64.b64decode(r.ciphertext_blob)


class AlibabaClassic:
    name = "aliyun-python-sdk-kms"

    def __init__(self, key):
        from aliyunsdkcore.client import AcsClient

        self.client = AcsClient(key[0], key[1], "cn-hangzhou", auto_retry=False)

    def call(self, name, **params):
        import importlib

        from aliyunsdkcore.acs_exception.exceptions import ServerException

        module = importlib.import_module(f"aliyunsdkkms.request.v20160120.{name}Request")
        req = getattr(module, f"{name}Request")()
        req.set_endpoint(HOST)
        req.set_protocol_type("http")
        for k, v in params.items():
            getattr(req, "set_" + k)(v)
        try:
            return json.loads(req_do(self.client, req))
        except ServerException as e:
            raise SdkError(e.get_error_code(), e.get_http_status())

    def generate(self, spec, ctx):
        kw = {"NumberOfBytes": spec} if isinstance(spec, int) else {"KeySpec": spec}
        # The documented form: EncryptionContext as a JSON string.
        r = self.call("GenerateDataKey", KeyId=ALIAS, EncryptionContext=json.dumps(ctx), **kw)
        return base64.b64decode(r["Plaintext"]), base64.b64decode(r["CiphertextBlob"])

    def decrypt(self, blob, ctx):
        # Handed a dict, this SDK sends Python's printed form of it.
        r = self.call("Decrypt", CiphertextBlob=base64.b64encode(blob).decode(), EncryptionContext=ctx)
        return base64.b64decode(r["Plaintext"])

    def encrypt(self, data, ctx):
        r = self.call("Encrypt", KeyId=ALIAS, Plaintext=base64.b64encode(data).decode(), EncryptionContext=json.dumps(ctx))
        return base64.b64decode(r["CiphertextBlob"])

    def re_encrypt(self, blob, source_ctx, dest_ctx):
        r = self.call(
            "ReEncrypt", CiphertextBlob=base64.b64encode(blob).decode(), DestinationKeyId=ALIAS,
            SourceEncryptionContext=json.dumps(source_ctx), DestinationEncryptionContext=json.dumps(dest_ctx),
        )
        return base64.b64decode(r["CiphertextBlob"])


def req_do(client, req):
    return client.do_action_with_exception(req)


SDKS = [Aws, Tencent, Alibaba, AlibabaClassic]

# What each SDK reports, by situation.
CODES = {
    "invalid_ciphertext": {
        "boto3": "InvalidCiphertextException",
        "tencentcloud-sdk-python": "InvalidParameterValue.InvalidCiphertext",
        "alibabacloud-kms20160120": "Rejected.InvalidCiphertext",
        "aliyun-python-sdk-kms": "Rejected.InvalidCiphertext",
    },
    "bad_signature": {
        "boto3": "InvalidSignatureException",
        "tencentcloud-sdk-python": "AuthFailure.SignatureFailure",
        "alibabacloud-kms20160120": "SignatureDoesNotMatch",
        # The classic SDK renames it when the server's string to sign is its own.
        "aliyun-python-sdk-kms": "InvalidAccessKeySecret",
    },
    "unknown_key": {
        "boto3": "UnrecognizedClientException",
        "tencentcloud-sdk-python": "AuthFailure.SecretIdNotFound",
        "alibabacloud-kms20160120": "InvalidAccessKeyId.NotFound",
        "aliyun-python-sdk-kms": "InvalidAccessKeyId.NotFound",
    },
    "denied": {
        "boto3": "AccessDeniedException",
        "tencentcloud-sdk-python": "AuthFailure.UnauthorizedOperation",
        "alibabacloud-kms20160120": "Forbidden.RAM",
        "aliyun-python-sdk-kms": "Forbidden.RAM",
    },
}


def expect_error(sdk, situation, fn):
    try:
        fn()
    except SdkError as e:
        want = CODES[situation][sdk.name]
        check(e.code == want, f"{sdk.name}: {situation} gives {want} (got {e.code})")
        check(e.status is None or int(e.status) < 500, f"{sdk.name}: {situation} is not a 5xx (got {e.status})")
        return
    raise AssertionError(f"{sdk.name}: {situation} was not refused")


def round_trips():
    """Every SDK mints AES_128, AES_256 and NumberOfBytes keys; every SDK
    opens every other's blobs to the same bytes."""
    clients = [cls(KEYS["good"]) for cls in SDKS]
    minted = []
    for sdk in clients:
        for spec, length in (("AES_128", 16), ("AES_256", 32), (48, 48)):
            ctx = {"video_id": f"{sdk.name}-{spec}"}
            plaintext, blob = sdk.generate(spec, ctx)
            check(len(plaintext) == length, f"{sdk.name}: {spec} gives {length} bytes")
            minted.append((sdk.name, spec, plaintext, blob, ctx))
    for name, spec, plaintext, blob, ctx in minted:
        for other in clients:
            check(
                other.decrypt(blob, ctx) == plaintext,
                f"{other.name} decrypts {name}'s {spec} key to the same bytes",
            )
    # Encrypt through each, decrypt through every other.
    for sdk in clients:
        data = os.urandom(100)
        blob = sdk.encrypt(data, {"purpose": "encrypt"})
        for other in clients:
            check(other.decrypt(blob, {"purpose": "encrypt"}) == data, f"{other.name} decrypts {sdk.name}'s Encrypt")
    # ReEncrypt through each moves a key to another context; every door opens it there.
    _, _, plaintext, blob, ctx = minted[0]
    for sdk in clients:
        moved = sdk.re_encrypt(blob, ctx, {"video_id": "moved-" + sdk.name})
        for other in clients:
            check(
                other.decrypt(moved, {"video_id": "moved-" + sdk.name}) == plaintext,
                f"{other.name} decrypts what {sdk.name} re-encrypted",
            )
    # Without plaintext: the blob opens elsewhere to a key of the asked size.
    for sdk in clients:
        if hasattr(sdk, "without_plaintext"):
            sealed = sdk.without_plaintext({"video_id": "later"})
            check(len(clients[0].decrypt(sealed, {"video_id": "later"})) == 32, f"{sdk.name}: key sealed without plaintext")
    check(len(clients[0].call("generate_random", NumberOfBytes=64)["Plaintext"]) == 64, "boto3: GenerateRandom")
    # A wrong context or a tampered blob: each SDK's invalid-ciphertext error.
    _, _, plaintext, blob, ctx = minted[0]
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    for sdk in clients:
        expect_error(sdk, "invalid_ciphertext", lambda: sdk.decrypt(blob, {"video_id": "someone-else"}))
        expect_error(sdk, "invalid_ciphertext", lambda: sdk.decrypt(bytes(tampered), ctx))


def refusals():
    for cls in SDKS:
        expect_error(cls, "bad_signature", lambda: cls(KEYS["wrong_secret"]).generate("AES_128", {}))
        expect_error(cls, "unknown_key", lambda: cls(KEYS["deleted"]).generate("AES_128", {}))
        expect_error(cls, "unknown_key", lambda: cls(KEYS["revoked"]).generate("AES_128", {}))
        # Role: a decrypt-only client may not mint.
        expect_error(cls, "denied", lambda: cls(KEYS["decrypt_only"]).generate("AES_128", {}))
        # Scope: a client limited to another key may not use this one.
        expect_error(cls, "denied", lambda: cls(KEYS["limited"]).generate("AES_128", {}))


def aws_env(key):
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=key[0],
        AWS_SECRET_ACCESS_KEY=key[1],
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_KMS=URL,
        AWS_MAX_ATTEMPTS="1",
    )
    env.pop("AWS_PROFILE", None)
    return env


def aws_kms(key, *args):
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    out = subprocess.run([aws, "kms", *args, "--output", "json"], env=aws_env(key), capture_output=True, text=True)
    check(out.returncode == 0, f"aws kms {args[0]} succeeds: {out.stderr}")
    return json.loads(out.stdout) if out.stdout.strip() else {}


def aws_cli():
    env = aws_env(KEYS["good"])
    bin_dir = os.path.dirname(sys.executable)

    def run(*args):
        return aws_kms(KEYS["good"], *args)

    r = run("generate-data-key", "--key-id", ALIAS, "--key-spec", "AES_256", "--encryption-context", "video_id=cli")
    check(r["KeyId"] == KEY_ARN, "aws kms generate-data-key answers the key ARN")
    blob_path = os.path.join(WORK, "key.bin")
    with open(blob_path, "wb") as f:
        f.write(base64.b64decode(r["CiphertextBlob"]))
    d = run("decrypt", "--ciphertext-blob", "fileb://" + blob_path, "--encryption-context", "video_id=cli")
    check(d["Plaintext"] == r["Plaintext"], "aws kms decrypt with fileb:// gives the key back")

    # The AWS Encryption SDK CLI: encrypt and decrypt a file with the key ARN.
    cli = os.path.join(bin_dir, "aws-encryption-cli")
    plain = os.path.join(WORK, "plain.txt")
    with open(plain, "w") as f:
        f.write("a video's worth of secrets\n" * 100)
    for args in (
        ["--encrypt", "--input", plain, "--output", plain + ".enc", "--encryption-context", "purpose=test"],
        ["--decrypt", "--input", plain + ".enc", "--output", plain + ".dec"],
    ):
        out = subprocess.run(
            [cli, *args, "--wrapping-keys", "key=" + KEY_ARN, "--commitment-policy",
             "require-encrypt-require-decrypt", "-S"],
            env=env, capture_output=True, text=True,
        )
        check(out.returncode == 0, f"aws-encryption-cli {args[0]} succeeds: {out.stderr}")
    with open(plain) as a, open(plain + ".dec") as b:
        check(a.read() == b.read(), "aws-encryption-cli decrypts the file to what was encrypted")


def admin(key):
    """Key management through each SDK with an admin client's access key."""
    # Pagination the CLI's way: it follows NextMarker through pages of one.
    keys = aws_kms(key, "list-keys", "--page-size", "1")["Keys"]
    check(len(keys) >= 2 and len({k["KeyId"] for k in keys}) == len(keys), "aws kms list-keys follows NextMarker")
    aws = Aws(key)
    created = aws.call("create_key", Description="made through boto3")["KeyMetadata"]
    check(created["Arn"].endswith(created["KeyId"]) and created["KeyState"] == "Enabled", "boto3: CreateKey")
    kid = created["KeyId"]
    aws.call("create_alias", AliasName="alias/boto", TargetKeyId=kid)
    described = aws.call("describe_key", KeyId="arn:aws:kms:us-east-1:000000000000:alias/boto")["KeyMetadata"]
    check(described["KeyId"] == kid, "boto3: DescribeKey by alias ARN")
    names = [a["AliasName"] for p in aws.client.get_paginator("list_aliases").paginate(PaginationConfig={"PageSize": 1}) for a in p["Aliases"]]
    check("alias/boto" in names and ALIAS in names, "boto3: ListAliases pages")
    aws.call("enable_key_rotation", KeyId=kid, RotationPeriodInDays=90)
    status = aws.call("get_key_rotation_status", KeyId=kid)
    check(status["KeyRotationEnabled"] and status["RotationPeriodInDays"] == 90, "boto3: key rotation on")
    aws.call("disable_key_rotation", KeyId=kid)
    check(not aws.call("get_key_rotation_status", KeyId=kid)["KeyRotationEnabled"], "boto3: key rotation off")
    aws.call("rotate_key_on_demand", KeyId=kid)
    aws.call("disable_key", KeyId=kid)
    check(aws.call("describe_key", KeyId=kid)["KeyMetadata"]["KeyState"] == "Disabled", "boto3: DisableKey")
    aws.call("enable_key", KeyId=kid)
    sched = aws.call("schedule_key_deletion", KeyId=kid, PendingWindowInDays=7)
    check(sched["KeyState"] == "PendingDeletion", "boto3: ScheduleKeyDeletion")
    aws.call("cancel_key_deletion", KeyId=kid)
    aws.call("delete_alias", AliasName="alias/boto")

    tc = Tencent(key)
    made = tc.call("CreateKey", Alias="tencent-made", Description="made through Tencent's SDK")
    check(made.KeyState == "Enabled", "tencent: CreateKey")
    check(tc.call("DescribeKey", KeyId=made.KeyId).KeyMetadata.Alias == "tencent-made", "tencent: DescribeKey")
    tc.call("EnableKeyRotation", KeyId=made.KeyId)
    check(tc.call("GetKeyRotationStatus", KeyId=made.KeyId).KeyRotationEnabled, "tencent: rotation on")
    listed = tc.call("ListKeys", Limit=100)
    check(any(k.KeyId == made.KeyId for k in listed.Keys), "tencent: ListKeys")

    ali = Alibaba(key)
    meta = ali.call("create_key", ali.models.CreateKeyRequest(description="made through Alibaba's SDK")).key_metadata
    check(meta.key_state == "Enabled", "alibaba: CreateKey")
    ali.call("create_alias", ali.models.CreateAliasRequest(alias_name="alias/ali", key_id=meta.key_id))
    ali.call("create_key_version", ali.models.CreateKeyVersionRequest(key_id=meta.key_id))
    versions = ali.call("list_key_versions", ali.models.ListKeyVersionsRequest(key_id=meta.key_id))
    check(versions.total_count == 2, "alibaba: CreateKeyVersion and ListKeyVersions")
    ali.call(
        "update_rotation_policy",
        ali.models.UpdateRotationPolicyRequest(key_id=meta.key_id, enable_automatic_rotation=True, rotation_interval="30d"),
    )
    described = ali.call("describe_key", ali.models.DescribeKeyRequest(key_id="alias/ali")).key_metadata
    check(described.automatic_rotation == "Enabled", "alibaba: UpdateRotationPolicy")
    aliases = ali.call("list_aliases", ali.models.ListAliasesRequest(page_size=100))
    check(any(a.alias_name == "alias/ali" for a in aliases.aliases.alias), "alibaba: ListAliases")


def main():
    steps = [round_trips, refusals, aws_cli]
    if "admin" in KEYS:
        steps.append(lambda: admin(KEYS["admin"]))
    try:
        for step in steps:
            step()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"checks": len(CHECKS)}))


if __name__ == "__main__":
    main()
