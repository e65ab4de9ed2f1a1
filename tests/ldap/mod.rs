//! A private slapd for the directory tests: Debian's `slapd`, with a throwaway cn=config made by
//! `slapadd -n0` (mdb in a temp dir, twofold's schema from conf/ldap, base dc=twofold,dc=test, a
//! bind DN for twofoldd, people entries), listening on free loopback ports. The system's slapd
//! and its config are never touched. Killed (and SIGCONT'ed first, if stopped) on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::TempDir;

pub const BASE: &str = "dc=twofold,dc=test";
pub const BIND_DN: &str = "cn=twofoldd,dc=twofold,dc=test";
pub const BIND_PASSWORD: &str = "daemon-secret";
/// The people entries made at start.
pub const PEOPLE: &[&str] = &["alice", "bob"];

pub struct Slapd {
    pub dir: TempDir,
    /// Plain LDAP on 127.0.0.1 (which offers StartTLS when started with TLS).
    pub port: u16,
    /// LDAPS on 127.0.0.1, when started with TLS.
    pub tls_port: Option<u16>,
    /// The CA that signed the server's certificate, when started with TLS.
    pub ca_file: Option<PathBuf>,
    child: Option<Child>,
    stopped: bool,
}

/// Whether the tools are here; under CI they must be (tests/run.sh installs them).
pub fn available() -> bool {
    let here = Path::new("/usr/sbin/slapd").exists() && Path::new("/usr/sbin/slapadd").exists();
    if !here {
        assert!(
            !twofold_tests::codes::under_ci(),
            "slapd and slapadd are missing under CI: tests/run.sh installs slapd"
        );
    }
    here
}

impl Slapd {
    pub fn start() -> Slapd {
        Slapd::start_inner(false)
    }

    /// Also listens with LDAPS, on a certificate for localhost and 127.0.0.1 from a CA made now;
    /// the plain port then offers StartTLS with the same certificate.
    pub fn start_with_tls() -> Slapd {
        Slapd::start_inner(true)
    }

    fn start_inner(tls: bool) -> Slapd {
        let dir = TempDir::new("slapd");
        let conf = dir.subdir("slapd.d");
        let db = dir.subdir("db");
        let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/ldap/twofold.ldif");
        let tls_lines = match tls {
            true => {
                make_certificates(dir.path());
                format!(
                    "olcTLSCACertificateFile: {d}/ca.pem\nolcTLSCertificateFile: {d}/server.pem\n\
                     olcTLSCertificateKeyFile: {d}/server.key\n",
                    d = dir.path().display()
                )
            }
            false => String::new(),
        };
        let config = format!(
            "dn: cn=config\nobjectClass: olcGlobal\ncn: config\nolcPidFile: {d}/slapd.pid\n{tls_lines}\n\
             dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\n\
             olcModulePath: /usr/lib/ldap\nolcModuleLoad: back_mdb\n\n\
             dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n\
             include: file:///etc/ldap/schema/core.ldif\n\n\
             include: file:///etc/ldap/schema/cosine.ldif\n\n\
             include: file:///etc/ldap/schema/inetorgperson.ldif\n\n\
             include: file://{schema}\n\n\
             dn: olcDatabase={{-1}}frontend,cn=config\nobjectClass: olcDatabaseConfig\n\
             objectClass: olcFrontendConfig\nolcDatabase: {{-1}}frontend\n\n\
             dn: olcDatabase={{0}}config,cn=config\nobjectClass: olcDatabaseConfig\n\
             olcDatabase: {{0}}config\nolcAccess: {{0}}to * by * none\n\n\
             dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\n\
             objectClass: olcMdbConfig\nolcDatabase: {{1}}mdb\nolcDbDirectory: {db}\n\
             olcSuffix: {BASE}\nolcRootDN: cn=admin,{BASE}\nolcRootPW: admin-secret\n\
             olcDbMaxSize: 16777216\n\
             olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none\n\
             olcAccess: {{1}}to attrs=twofoldRecord,twofoldState by dn.exact=\"{BIND_DN}\" write by * none\n\
             olcAccess: {{2}}to * by dn.exact=\"{BIND_DN}\" write by * read\n",
            d = dir.path().display(),
            schema = schema.canonicalize().expect("conf/ldap/twofold.ldif").display(),
            db = db.display(),
        );
        let mut data = format!(
            "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: twofold\no: twofold\n\n\
             dn: {BIND_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: twofoldd\nuserPassword: {BIND_PASSWORD}\n\n\
             dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n\n"
        );
        for user in PEOPLE {
            data.push_str(&format!(
                "dn: uid={user},ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: {user}\n\
                 cn: {user}\nsn: {user}\n\n"
            ));
        }
        let config_ldif = dir.write("config.ldif", config);
        let data_ldif = dir.write("data.ldif", data);
        run(Command::new("/usr/sbin/slapadd")
            .args(["-n0", "-F"])
            .arg(&conf)
            .arg("-l")
            .arg(&config_ldif));
        run(Command::new("/usr/sbin/slapadd")
            .args(["-n1", "-F"])
            .arg(&conf)
            .arg("-l")
            .arg(&data_ldif));
        let mut slapd = Slapd {
            dir,
            port: free_port(),
            tls_port: tls.then(free_port),
            ca_file: None,
            child: None,
            stopped: false,
        };
        if tls {
            slapd.ca_file = Some(slapd.dir.path().join("ca.pem"));
        }
        slapd.run();
        slapd
    }

    /// Starts (again) on the same ports and database.
    pub fn run(&mut self) {
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(port) = self.tls_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{port}/"));
        }
        let child = Command::new("/usr/sbin/slapd")
            .arg("-F")
            .arg(self.dir.path().join("slapd.d"))
            .args(["-h", &urls, "-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start slapd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "slapd did not listen in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn tls_url(&self) -> String {
        format!(
            "ldaps://localhost:{}",
            self.tls_port.expect("started with TLS")
        )
    }

    /// The plain port by the name the certificate carries, for StartTLS.
    pub fn starttls_url(&self) -> String {
        format!("ldap://localhost:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to the clients).
    pub fn kill(&mut self) {
        self.cont();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel, nothing answers.
    pub fn stop(&mut self) {
        self.signal("-STOP");
        self.stopped = true;
    }

    pub fn cont(&mut self) {
        if self.stopped {
            self.signal("-CONT");
            self.stopped = false;
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("slapd running").id();
        run(Command::new("kill").arg(signal).arg(pid.to_string()));
    }

    /// The values of `attr` on the user's entry, read as the directory's admin with ldapsearch
    /// (an independent client).
    pub fn attribute(&self, user: &str, attr: &str) -> Vec<String> {
        let out = Command::new("ldapsearch")
            .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &self.url()])
            .args(["-D", &format!("cn=admin,{BASE}"), "-w", "admin-secret"])
            .args(["-b", &format!("uid={user},ou=people,{BASE}"), "-s", "base"])
            .arg("(objectClass=*)")
            .arg(attr)
            .output()
            .expect("run ldapsearch");
        assert!(out.status.success(), "ldapsearch: {out:?}");
        let prefix = format!("{attr}:");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_string())
            .collect()
    }
}

impl Slapd {
    /// Applies an LDIF change as the directory's admin, with ldapmodify.
    pub fn admin_modify(&self, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", &self.url(), "-D", &format!("cn=admin,{BASE}")])
            .args(["-w", "admin-secret"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("run ldapmodify");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "ldapmodify failed");
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn run(command: &mut Command) {
    let out = command.output().expect("run a command");
    assert!(out.status.success(), "{command:?}: {out:?}");
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

/// A CA and a server certificate for localhost and 127.0.0.1 (and another CA, `other-ca.pem`,
/// that signed nothing here).
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    for ca in ["ca", "other-ca"] {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=twofold test {ca}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}
