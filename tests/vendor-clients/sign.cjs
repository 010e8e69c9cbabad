// How SuperOffice's own documentation ("How to sign system user token") signs a system user token
// in Node.js: `crypto.createSign('SHA256')` over `<system user token>.<yyyyMMddHHmm>`, RSA PKCS#1
// v1.5 with the application's private key, base64. `node sign.cjs KEY_FILE DATA` prints the
// signature; tests/it/vendor_clients.rs compares it byte for byte with sessionsync's.
const crypto = require("crypto");
const fs = require("fs");

const [keyFile, data] = process.argv.slice(2);
if (!keyFile || data === undefined) {
  console.error("usage: node sign.cjs KEY_FILE DATA");
  process.exit(2);
}
const sign = crypto.createSign("SHA256");
sign.update(data);
process.stdout.write(sign.sign(fs.readFileSync(keyFile, "utf8"), "base64"));
