import { constants, generateKeyPairSync, privateEncrypt, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';

/**
 * The lab's private certificate authority. Certificates are built and signed with node-forge, but
 * RSA keys come from Node's native crypto: forge's pure-JS keygen takes seconds per 2048-bit key.
 */

export interface KeyPairPem {
  privateKeyPem: string;
  publicKeyPem: string;
}

export interface IssueOptions {
  commonName?: string;
  /** DNS subjectAltNames (wildcards allowed, e.g. `*.devices.fleetprobe.test`). */
  dnsNames?: string[];
  /** IP subjectAltNames. */
  ips?: string[];
  /** Defaults to one hour ago (tolerates small clock skew). */
  notBefore?: Date;
  /** Defaults to 30 days from now. A date in the past issues an expired certificate. */
  notAfter?: Date;
  /** Reuse an existing key (saves a keygen when issuing several certs for the same server). */
  key?: KeyPairPem;
}

export interface IssuedCert {
  certPem: string;
  keyPem: string;
}

export interface LabCa {
  certPem: string;
  issue(opts: IssueOptions): IssuedCert;
}

const DAY = 24 * 3600 * 1000;

export function generateRsaKeyPair(): KeyPairPem {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    // PKCS#1 / SPKI PEM are the formats forge's *FromPem functions read.
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

// DER prefix of a PKCS#1 v1.5 DigestInfo for SHA-256 (RFC 8017, section 9.2, note 1).
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/**
 * A signer forge's `cert.sign()` accepts, doing the RSA operation with Node's native crypto:
 * forge's pure-JS big-number RSA takes ~50 ms per signature, and the lab signs several
 * certificates every time it starts. PKCS#1 v1.5 signing is RSA over DigestInfo(hash).
 */
function nativeSigner(privateKeyPem: string): forge.pki.rsa.PrivateKey {
  return {
    sign(md: forge.md.MessageDigest) {
      const digestInfo = Buffer.concat([SHA256_DIGEST_INFO, Buffer.from(md.digest().getBytes(), 'binary')]);
      return privateEncrypt({ key: privateKeyPem, padding: constants.RSA_PKCS1_PADDING }, digestInfo).toString('binary');
    },
  } as unknown as forge.pki.rsa.PrivateKey;
}

/** A positive, non-zero serial (DER integers are signed: clear the top bit, set a low one). */
function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = (b[0] & 0x7f) | 0x01;
  return b.toString('hex');
}

export function createLabCa(commonName = 'fleetprobe lab CA'): LabCa {
  const caKey = generateRsaKeyPair();
  const caPrivate = nativeSigner(caKey.privateKeyPem);
  const caCert = forge.pki.createCertificate();
  caCert.publicKey = forge.pki.publicKeyFromPem(caKey.publicKeyPem);
  caCert.serialNumber = serialNumber();
  // Backdated well before any cert it issues, so an "expired" leaf fails only on its own dates.
  caCert.validity.notBefore = new Date(Date.now() - 365 * DAY);
  caCert.validity.notAfter = new Date(Date.now() + 365 * DAY);
  const caSubject = [
    { name: 'commonName', value: commonName },
    { name: 'organizationName', value: 'fleetprobe lab' },
  ];
  caCert.setSubject(caSubject);
  caCert.setIssuer(caSubject);
  caCert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  caCert.sign(caPrivate, forge.md.sha256.create());
  const caKeyId = caCert.generateSubjectKeyIdentifier().getBytes();

  // One key for every leaf this CA issues: each RSA-2048 key costs ~200 ms to make, and the lab
  // starts for every `run --lab` and many tests. Separate keys would prove nothing a probe checks.
  let leafKey: KeyPairPem | undefined;
  function issue(opts: IssueOptions): IssuedCert {
    const key = opts.key ?? (leafKey ??= generateRsaKeyPair());
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(key.publicKeyPem);
    cert.serialNumber = serialNumber();
    cert.validity.notBefore = opts.notBefore ?? new Date(Date.now() - 3600 * 1000);
    cert.validity.notAfter = opts.notAfter ?? new Date(Date.now() + 30 * DAY);
    const dns = opts.dnsNames ?? [];
    const ips = opts.ips ?? [];
    cert.setSubject([{ name: 'commonName', value: opts.commonName ?? dns[0] ?? ips[0] ?? 'fleetprobe lab server' }]);
    cert.setIssuer(caCert.subject.attributes);
    const altNames = [
      ...dns.map((value) => ({ type: 2, value })),
      ...ips.map((ip) => {
        if (!isIP(ip)) throw new Error(`not an IP address: ${ip}`);
        return { type: 7, ip };
      }),
    ];
    cert.setExtensions([
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      ...(altNames.length ? [{ name: 'subjectAltName', altNames }] : []),
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: caKeyId },
    ]);
    cert.sign(caPrivate, forge.md.sha256.create());
    return { certPem: forge.pki.certificateToPem(cert), keyPem: key.privateKeyPem };
  }

  return { certPem: forge.pki.certificateToPem(caCert), issue };
}
