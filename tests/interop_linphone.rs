//! Interop with phones and a proxy nobody here wrote: two linphone 5.1
//! phones (Debian `linphone-cli`, `linphone-daemon` on a private
//! PulseAudio null sink) registered at Kamailio 5.6 (Debian `kamailio`),
//! which record-routes every dialog and sends orbit and feature-code
//! numbers to the real `callpark` binary through its dispatcher (pinging
//! callpark with OPTIONS). callpark sends its own requests through
//! Kamailio (`outbound_proxy`).
//!
//! What a peer observes is what is asserted: the RTP statistics each
//! linphone prints when a call ends (packets and RTCP received), the
//! requests Kamailio relayed (its log), and callpark's events.
//!
//! These need the Debian packages, so they are ignored by a plain `cargo
//! test` and run by `.ci/run` (which installs them) as
//! `cargo test --test interop_linphone -- --ignored`.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Server, free_port, free_port_pair, scenario, wait_log};

/// A process, started in a process group of its own, killed with all its
/// children (Kamailio forks workers that outlive a killed parent) and
/// reaped when the test ends, pass or fail.
struct Reaped(Child);

impl Reaped {
    fn spawn(command: &mut Command, what: &str) -> Reaped {
        use std::os::unix::process::CommandExt;
        Reaped(
            command
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("start {what}: {e}")),
        )
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        // SAFETY: signalling the process group of our own child.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// A private PulseAudio with a null sink and a silent source, for the
/// phones' audio devices.
fn pulseaudio(dir: &Path) -> (Reaped, PathBuf) {
    let socket = dir.join("pulse.sock");
    let child = Reaped::spawn(
        Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "-L",
                "module-null-sink sink_name=nul",
                "-L",
                "module-null-source source_name=silence",
                "-L",
                &format!(
                    "module-native-protocol-unix socket={} auth-anonymous=1",
                    socket.display()
                ),
            ])
            .env("HOME", dir)
            .env("XDG_RUNTIME_DIR", dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("pulse.log")).unwrap()),
        "pulseaudio (Debian pulseaudio)",
    );
    wait_until("the PulseAudio socket", Duration::from_secs(10), || {
        socket.exists()
    });
    (child, socket)
}

/// Kamailio as registrar and record-routing proxy on 127.0.0.1:`port`:
/// orbit numbers and feature codes go to callpark (dispatcher set 1, which
/// Kamailio pings with OPTIONS), everything else to the registered phones.
fn kamailio(dir: &Path, port: u16, callpark: u16) -> (Reaped, PathBuf) {
    let list = dir.join("dispatcher.list");
    std::fs::write(&list, format!("1 sip:127.0.0.1:{callpark}\n")).unwrap();
    let cfg = dir.join("kamailio.cfg");
    let modules = [
        "kex",
        "corex",
        "tm",
        "tmx",
        "sl",
        "rr",
        "pv",
        "maxfwd",
        "usrloc",
        "registrar",
        "textops",
        "siputils",
        "xlog",
        "dispatcher",
    ]
    .iter()
    .map(|m| format!("loadmodule \"{m}.so\"\n"))
    .collect::<String>();
    std::fs::write(
        &cfg,
        format!(
            r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
alias="127.0.0.1:{port}"
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
{modules}
modparam("registrar", "gruu_enabled", 0)
modparam("usrloc", "db_mode", 0)
modparam("dispatcher", "list_file", "{list}")
modparam("dispatcher", "ds_ping_interval", 1)
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_ping_from", "sip:dispatcher@127.0.0.1:{port}")

request_route {{
    xlog("L_NOTICE", "relay $rm $ru from $si:$sp\n");
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        # SIPp's watcher ignores the route set of its subscription.
        if ($rU =~ "^7[0-9][0-9]$" && ds_select_dst("1", "0")) {{ t_relay(); exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    t_check_trans();
    if (is_method("REGISTER")) {{ save("location"); exit; }}
    remove_hf("Route");
    record_route();
    if ($rU =~ "^(\*68|\*88|\*4|#58|7[0-9][0-9]$)") {{
        if (!ds_select_dst("1", "0")) {{ sl_send_reply("503", "No park server"); exit; }}
        t_relay();
        exit;
    }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    t_relay();
}}
"#,
            list = list.display()
        ),
    )
    .unwrap();
    let log = dir.join("kamailio.log");
    let child = Reaped::spawn(
        Command::new("kamailio")
            .args(["-DD", "-E", "-f"])
            .arg(&cfg)
            .arg("-Y")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
        "kamailio (Debian kamailio)",
    );
    (child, log)
}

/// One linphone phone, driven through linphone-daemon's command pipe.
struct Phone {
    name: String,
    dir: PathBuf,
    pipe: PathBuf,
    _daemon: Reaped,
}

impl Phone {
    fn start(name: &str, root: &Path, pulse: &Path, proxy: u16) -> Phone {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join(".local/share/linphone")).unwrap();
        let sip = free_port();
        let rtp = free_port_pair();
        std::fs::write(
            dir.join("rc"),
            format!(
                "[sip]\nsip_port={sip}\nsip_tcp_port=-1\nsip_tls_port=-1\nuse_ipv6=0\nipv6_migration_done=1\n\
                 default_proxy=0\nguess_hostname=0\ncontact=sip:{name}@127.0.0.1:{sip}\n\
                 [net]\nfirewall_policy=0\n[rtp]\naudio_rtp_port={rtp}\n\
                 [sound]\nechocancellation=0\n\
                 [proxy_0]\nreg_proxy=sip:127.0.0.1:{proxy}\nreg_identity=sip:{name}@127.0.0.1\n\
                 reg_expires=3600\nreg_sendregister=1\npublish=0\n\
                 [misc]\nmax_calls=4\n[video]\ncapture=0\ndisplay=0\n"
            ),
        )
        .unwrap();
        // The daemon makes its command socket under /tmp by this name.
        let pipe_name = format!("callpark-test-{}-{name}-{sip}", std::process::id());
        let pipe = PathBuf::from("/tmp").join(&pipe_name);
        let daemon = Reaped::spawn(
            Command::new("linphone-daemon")
                .arg("--config")
                .arg(dir.join("rc"))
                .args(["--pipe", &pipe_name, "--log"])
                .arg(dir.join("linphone.log"))
                .current_dir(&dir)
                .env("HOME", &dir)
                .env("XDG_RUNTIME_DIR", &dir)
                .env("PULSE_SERVER", format!("unix:{}", pulse.display()))
                .env("PULSE_SINK", "nul")
                .env("PULSE_SOURCE", "silence")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.join("events.log")).unwrap())
                .stderr(Stdio::null()),
            "linphone-daemon (Debian linphone-cli)",
        );
        let phone = Phone {
            name: name.to_string(),
            dir,
            pipe,
            _daemon: daemon,
        };
        wait_until(
            &format!("{name}'s command pipe"),
            Duration::from_secs(20),
            || phone.pipe.exists(),
        );
        wait_until(
            &format!("{name} registered at Kamailio"),
            Duration::from_secs(20),
            || {
                phone
                    .command("register-status ALL")
                    .contains("RegistrationOk")
            },
        );
        phone
    }

    /// Sends one command and returns the daemon's answer. The daemon
    /// serves one client at a time and may close a connection it did not
    /// read yet (seen on a loaded machine): an empty answer is asked again.
    fn command(&self, command: &str) -> String {
        for _ in 0..5 {
            let answer = self.command_once(command);
            if !answer.is_empty() {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        String::new()
    }

    fn command_once(&self, command: &str) -> String {
        let mut s = match UnixStream::connect(&self.pipe) {
            Ok(s) => s,
            Err(e) => return format!("(cannot connect to {}: {e})", self.pipe.display()),
        };
        // The answer is a status block, maybe followed by a blank line
        // and more fields; it is complete when nothing more arrives.
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let _ = s.write_all(format!("{command}\n").as_bytes());
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) if !out.is_empty() => break,
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `Id: N` of the answer.
    fn call(&self, uri: &str) -> u32 {
        let answer = self.command(&format!("call {uri}"));
        field(&answer, "Id")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{}: call {uri}: {answer}", self.name))
    }

    /// Waits until call `id` is in `state` (e.g. `StreamsRunning`).
    fn wait_state(&self, id: u32, state: &str) {
        wait_until(
            &format!("{}: call {id} {state}", self.name),
            Duration::from_secs(20),
            || self.command(&format!("call-status {id}")).contains(state),
        );
    }

    /// Hangs up call `id`, asking again while the phone still has it (a
    /// phone busy with another call's transfer may not act on the first).
    fn hang_up(&self, id: u32) {
        wait_until(
            &format!("{}: call {id} hung up", self.name),
            Duration::from_secs(20),
            || {
                let status = self.command(&format!("call-status {id}"));
                if status.contains("No call with such id")
                    || status.contains("CallEnd")
                    || status.contains("Released")
                {
                    return true;
                }
                self.command(&format!("terminate {id}"));
                std::thread::sleep(Duration::from_millis(500));
                false
            },
        );
    }

    fn events(&self) -> String {
        read(&self.dir.join("events.log"))
    }

    /// Waits until `event` (e.g. `LinphoneCallIncomingReceived`) was
    /// reported `count` times; returns the id of the last.
    fn wait_event(&self, event: &str, count: usize) -> u32 {
        wait_until(
            &format!("{}: {count}x {event}", self.name),
            Duration::from_secs(20),
            || self.events().matches(&format!("Event: {event}\n")).count() >= count,
        );
        let events = self.events();
        let at = events
            .match_indices(&format!("Event: {event}\n"))
            .nth(count - 1)
            .map(|(i, _)| i)
            .unwrap();
        field(&events[at..], "Id")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The RTP statistics of the last call that ended: (RTP packets
    /// received, RTCP packets received).
    fn last_call_stats(&self) -> (u64, u64) {
        let log = read(&self.dir.join("linphone.log"));
        let block = log
            .rsplit("AUDIO SESSION'S RTP STATISTICS")
            .next()
            .unwrap_or("");
        let count = |label: &str| -> u64 {
            block
                .lines()
                .find_map(|l| {
                    let rest = l.split("ortp-message-").nth(1)?;
                    let rest = rest.strip_prefix(label)?;
                    let n = rest.split_whitespace().next()?;
                    rest.contains("packets").then(|| n.parse().ok()).flatten()
                })
                .unwrap_or(0)
        };
        (count("received "), count("received rtcp "))
    }
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

fn tools_present() {
    for tool in ["linphone-daemon", "kamailio", "pulseaudio", "sipp"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        assert!(found, "{tool} is not installed (bash .ci/run installs it)");
    }
}

#[test]
#[ignore = "needs linphone-cli, kamailio, pulseaudio and sip-tester; .ci/run runs it"]
fn linphone_through_kamailio_parks_retrieves_and_recalls() {
    tools_present();
    let root = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let server = Server::start_with_server(
        &format!("outbound_proxy = \"sip:127.0.0.1:{proxy}\""),
        r#"
[defaults]
recall_after = "0s"
[[orbit]]
number = "702"
recall_after = "10s"
"#,
    );
    let (_kamailio, kamailio_log) = kamailio(root.path(), proxy, server.sip);
    let (_pulse, pulse) = pulseaudio(root.path());
    let at_proxy = |user: &str| format!("sip:{user}@127.0.0.1:{proxy}");
    let alice = Phone::start("alice", root.path(), &pulse, proxy);
    let bob = Phone::start("bob", root.path(), &pulse, proxy);
    let kamailio_saw = |needle: &str| read(&kamailio_log).contains(needle);
    // The dispatcher pings callpark every second and takes it out of the
    // set when a ping goes unanswered (probing mode 1): by now it has
    // pinged several times, and every park below is routed through it.

    // Attended park: Bob calls Alice; Alice dials *68704, hears the orbit,
    // and transfers Bob there with REFER + Replaces.
    bob.call(&at_proxy("alice"));
    let from_bob = alice.wait_event("LinphoneCallIncomingReceived", 1);
    alice.command(&format!("answer {from_bob}"));
    bob.wait_event("LinphoneCallStreamsRunning", 1);
    let to_park = alice.call(&at_proxy("*68704"));
    wait_log(&server, "event=\"parked\"", 1);
    alice.wait_event("LinphoneCallStreamsRunning", 2);
    alice.command(&format!("call-transfer {from_bob} {to_park}"));
    wait_log(&server, "event=\"attended-park-completed\"", 1);
    let log = server.log();
    assert!(
        log.contains("orbit=704 parker=sip:alice@127.0.0.1 caller=sip:bob@127.0.0.1"),
        "{log}"
    );
    // Bob hears the music (and our RTCP sender reports) for 6 s.
    std::thread::sleep(Duration::from_secs(6));
    // Alice retrieves the call from her phone: she hears Bob.
    let retrieve = alice.call(&at_proxy("*88704"));
    wait_log(&server, "event=\"retrieved\"", 1);
    std::thread::sleep(Duration::from_secs(3));
    alice.hang_up(retrieve);
    wait_log(&server, "event=\"ended\"", 1);
    // Bob's second call (to the park server) is released by our BYE.
    bob.wait_event("LinphoneCallReleased", 2);
    alice.wait_event("LinphoneCallReleased", 3);
    let (bob_rtp, bob_rtcp) = bob.last_call_stats();
    let (alice_rtp, _) = alice.last_call_stats();
    // 6 s of music and 3 s of Alice are about 450 packets; without the
    // music after the takeover Bob would have had at most Alice's 150.
    assert!(
        bob_rtp >= 300,
        "Bob got {bob_rtp} RTP packets after the takeover\n{}",
        server.log()
    );
    assert!(bob_rtcp >= 1, "Bob got no RTCP");
    assert!(
        alice_rtp >= 100,
        "Alice, retrieving, got {alice_rtp} packets of Bob"
    );
    // The phones' in-dialog requests to callpark passed through Kamailio.
    let relayed = read(&kamailio_log);
    let callpark_contact = format!("sip:callpark@127.0.0.1:{}", server.sip);
    for method in ["ACK", "BYE"] {
        assert!(
            relayed.contains(&format!("relay {method} {callpark_contact}")),
            "{method} to callpark did not pass through Kamailio:\n{relayed}"
        );
    }

    // Blind park with Referred-By (linphone copies it from the REFER),
    // with a busy lamp watching the orbit through the proxy: early while
    // Bob is parked, terminated when Alice takes him back.
    let watcher = Command::new("/usr/bin/sipp")
        .args(["-sf", &scenario("watcher"), &format!("127.0.0.1:{proxy}")])
        .args([
            "-s",
            "701",
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
        ])
        .args(["-m", "1", "-nostdin", "-timeout", "40", "-timeout_error"])
        .args(["-set", "rtp_port", "0", "-set", "codecs", "0"])
        .args(["-trace_msg", "-message_file"])
        .arg(root.path().join("watcher.msgs"))
        .current_dir(root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_log(&server, "busy lamp subscribed", 1);
    let blind_park = |orbit: &str, nth: usize| {
        bob.call(&at_proxy("alice"));
        let from_bob = alice.wait_event("LinphoneCallIncomingReceived", nth);
        alice.command(&format!("answer {from_bob}"));
        alice.wait_state(from_bob, "StreamsRunning");
        alice.command(&format!("call-transfer {from_bob} {}", at_proxy(orbit)));
    };
    blind_park("701", 2);
    wait_log(&server, "event=\"parked\"", 2);
    let log = server.log();
    assert!(
        log.contains("orbit=701 parker=sip:alice@127.0.0.1 caller=sip:bob@127.0.0.1"),
        "linphone's Referred-By names the parker:\n{log}"
    );
    // "Parked on 701" reaches Alice through Kamailio.
    wait_until("the MESSAGE to the parker", Duration::from_secs(10), || {
        kamailio_saw("relay MESSAGE sip:alice@127.0.0.1")
    });
    std::thread::sleep(Duration::from_secs(1));
    let retrieve = alice.call(&at_proxy("*88701"));
    wait_log(&server, "event=\"retrieved\"", 2);
    alice.wait_state(retrieve, "StreamsRunning");
    alice.hang_up(retrieve);
    wait_log(&server, "event=\"ended\"", 2);
    let out = watcher.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the lamp through Kamailio: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        read(&root.path().join("watcher.msgs")),
        server.log()
    );

    // A recall to the parker, found through the registrar: orbit 702
    // recalls after 10 s, Alice's phone rings, she answers and has Bob.
    blind_park("702", 3);
    wait_log(&server, "event=\"parked\"", 3);
    wait_log(&server, "event=\"recall-step\"", 1);
    let recall = alice.wait_event("LinphoneCallIncomingReceived", 4);
    alice.command(&format!("answer {recall}"));
    wait_log(&server, "event=\"recall-answered\"", 1);
    alice.wait_state(recall, "StreamsRunning");
    std::thread::sleep(Duration::from_secs(2));
    alice.hang_up(recall);
    wait_log(&server, "event=\"ended\"", 3);
    let (alice_rtp, _) = {
        alice.wait_event("LinphoneCallReleased", 7);
        alice.last_call_stats()
    };
    assert!(
        alice_rtp >= 50,
        "Alice heard {alice_rtp} packets of Bob on the recall"
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}
