"""Headers of one AWS SigV4-signed KMS request (what boto3 sends), for wrk:
one `Name: value` per line. Standard library only, so the benchmark needs
no SDK. Usage: sigv4.py HOST TARGET BODY ACCESS_KEY_ID SECRET"""
import datetime
import hashlib
import hmac
import sys

host, target, body, key_id, secret = sys.argv[1:6]
now = datetime.datetime.now(datetime.timezone.utc)
amz_date, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
headers = {
    "content-type": "application/x-amz-json-1.1",
    "host": host,
    "x-amz-date": amz_date,
    "x-amz-target": "TrentService." + target,
}
signed = ";".join(sorted(headers))
canonical = "\n".join(
    ["POST", "/", ""]
    + [f"{k}:{headers[k]}" for k in sorted(headers)]
    + ["", signed, hashlib.sha256(body.encode()).hexdigest()]
)
scope = f"{date}/us-east-1/kms/aws4_request"
to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
k = ("AWS4" + secret).encode()
for part in (date, "us-east-1", "kms", "aws4_request"):
    k = hmac.new(k, part.encode(), hashlib.sha256).digest()
signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
# Content-Type as report.lua names it, so this value replaces its default.
names = {"content-type": "Content-Type"}
for k, v in headers.items():
    if k != "host":
        print(f"{names.get(k, k)}: {v}")
