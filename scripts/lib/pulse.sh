# shellcheck shell=bash
# A private PulseAudio daemon with two virtual devices for tests:
#   sink "mic"      - feed it (pacat --device=mic); its monitor is the default source,
#                     so the app's microphone hears what was fed in;
#   sink "speaker"  - the default sink; record what the app played from speaker.monitor.
# Usage: source scripts/lib/pulse.sh; pulse_start; cargo test; pulse_stop
# Needs: pulseaudio pulseaudio-utils (and libasound2-plugins for ALSA clients).

pulse_start() {
    if ! command -v pulseaudio >/dev/null || ! command -v pactl >/dev/null; then
        echo "pulse_start: pulseaudio/pactl not installed (apt-get install pulseaudio pulseaudio-utils)" >&2
        return 1
    fi
    PULSE_TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/meshcall-pulse.XXXXXX") || return 1
    chmod 700 "$PULSE_TEST_DIR"
    export PULSE_TEST_DIR
    PULSE_SAVED_XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR-}"
    export XDG_RUNTIME_DIR="$PULSE_TEST_DIR"
    export PULSE_RUNTIME_PATH="$PULSE_TEST_DIR/pulse"
    export PULSE_SERVER="unix:$PULSE_TEST_DIR/pulse/native"
    # Keep the daemon's and clients' state out of the home folder.
    export PULSE_STATE_PATH="$PULSE_TEST_DIR/state"
    pulseaudio --daemonize=yes --exit-idle-time=-1 -n --load=module-native-protocol-unix \
        --load="module-null-sink sink_name=mic rate=48000" \
        --load="module-null-sink sink_name=speaker rate=48000" \
        --log-target="file:$PULSE_TEST_DIR/pulseaudio.log" 2>>"$PULSE_TEST_DIR/pulseaudio.err" || {
        echo "pulse_start: pulseaudio did not start; see $PULSE_TEST_DIR/pulseaudio.*" >&2
        return 1
    }
    local i
    for i in $(seq 1 50); do
        if pactl info >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
    if ! pactl info >/dev/null 2>&1; then
        echo "pulse_start: pactl info does not answer after 5 s" >&2
        pulse_stop
        return 1
    fi
    pactl set-default-sink speaker
    pactl set-default-source mic.monitor
    PULSE_TEST_PID=$(cat "$PULSE_RUNTIME_PATH/pid" 2>/dev/null || true)
    export PULSE_TEST_PID
    echo "pulse_start: PulseAudio up (pid ${PULSE_TEST_PID:-?}) at $PULSE_SERVER" >&2
}

pulse_stop() {
    if [ -n "${PULSE_TEST_DIR:-}" ]; then
        pactl exit >/dev/null 2>&1 || true
        if [ -n "${PULSE_TEST_PID:-}" ] && kill -0 "$PULSE_TEST_PID" 2>/dev/null; then
            sleep 0.2
            kill "$PULSE_TEST_PID" 2>/dev/null || true
        fi
        rm -rf "$PULSE_TEST_DIR"
        if [ -n "${PULSE_SAVED_XDG_RUNTIME_DIR-}" ]; then
            export XDG_RUNTIME_DIR="$PULSE_SAVED_XDG_RUNTIME_DIR"
        else
            unset XDG_RUNTIME_DIR
        fi
    fi
    unset PULSE_SAVED_XDG_RUNTIME_DIR PULSE_TEST_DIR PULSE_TEST_PID PULSE_SERVER PULSE_RUNTIME_PATH PULSE_STATE_PATH
}
