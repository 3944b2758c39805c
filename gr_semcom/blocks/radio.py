"""SDR front ends: thin hier blocks over gr-uhd (USRP) and gr-soapy (HackRF
and any other SoapySDR device), so one flowgraph serves both radios and a
missing radio is one clear :class:`RadioNotFoundError` instead of a UHD or
Soapy stack trace.

* ``radio_sink(driver, args, freq, rate, gain, ...)``: complex in -> the
  radio's TX. ``driver`` is ``uhd`` or ``soapy``; ``args`` are the device
  arguments (``type=b200``, ``serial=...``, ``addr=192.168.10.2``; for Soapy
  ``driver=hackrf`` is the default, ``driver=hackrf,serial=...`` picks one).
  ``gain`` is the overall TX gain in dB (UHD: the device's gain; HackRF:
  the VGA, 0-47 dB, and ``amp`` switches the 14 dB amplifier).
* ``radio_source(...)``: the radio's RX -> complex out; for HackRF ``gain``
  is split as LNA (0-40 dB, 8 dB steps) + VGA (0-62 dB, 2 dB steps) by
  SoapySDR's overall-gain distribution, ``amp`` as above.
* ``ppm``: frequency correction of the radio's reference (Soapy devices that
  support it, e.g. HackRF); for UHD use a GPSDO/external reference or shift
  ``freq``. The receiver's CFO acquisition range is given in hardware/README.md.
* ``find_radios()``: what UHD and SoapySDR see (``semcom radios``).
"""
from __future__ import annotations

from gnuradio import gr

DRIVERS = ("uhd", "soapy")


class RadioNotFoundError(RuntimeError):
    """No radio matching the arguments (or its driver is missing)."""


def _hint(driver: str, args: str) -> str:
    if driver == "uhd":
        return ("check `semcom radios` / `uhd_find_devices` (Debian package uhd-host), USB 3 cabling or the "
                "network address, and that the FPGA images are installed (uhd_images_downloader)")
    return ("check `semcom radios` / `SoapySDRUtil --find` (Debian packages python3-soapysdr, soapysdr-tools), "
            "that the device's module is installed (HackRF: soapysdr-module-hackrf) and that no other "
            "program holds the radio")


def _soapy_dev(args: str) -> str:
    a = args.strip()
    return a if "driver=" in a else ("driver=hackrf" + ("," + a if a else ""))


def _open(driver: str, args: str, tx: bool):
    if driver not in DRIVERS:
        raise ValueError(f"unknown radio driver {driver!r}; choose one of {DRIVERS}")
    try:
        if driver == "uhd":
            from gnuradio import uhd

            sa = uhd.stream_args(cpu_format="fc32", args="", channels=[0])
            return (uhd.usrp_sink if tx else uhd.usrp_source)(args, sa)
        from gnuradio import soapy

        return (soapy.sink if tx else soapy.source)(_soapy_dev(args), "fc32", 1, "", "", [""], [""])
    except ImportError as exc:
        raise RadioNotFoundError(f"gr-{driver} is not installed ({exc}); apt-get install gnuradio") from None
    except RuntimeError as exc:
        what = "USRP" if driver == "uhd" else "SoapySDR device"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RadioNotFoundError(f"no {what} for device args {args or '(none)'!r} ({first}); "
                                 + _hint(driver, args)) from None


def _configure(dev, driver: str, args: str, freq: float, rate: float, gain: float, antenna: str,
               amp: bool, ppm: float, bandwidth: float):
    if not rate > 0 or not freq > 0:
        raise ValueError("sample rate and centre frequency must be positive")
    try:
        if driver == "uhd":
            dev.set_samp_rate(rate)
            dev.set_center_freq(freq, 0)
            dev.set_gain(gain, 0)
            if antenna:
                dev.set_antenna(antenna, 0)
            if bandwidth:
                dev.set_bandwidth(bandwidth, 0)
            return
        dev.set_sample_rate(0, rate)
        if bandwidth:
            dev.set_bandwidth(0, bandwidth)
        dev.set_frequency(0, freq)
        if ppm:
            dev.set_frequency_correction(0, ppm)
        if "hackrf" in _soapy_dev(args):
            try:
                dev.set_gain(0, "AMP", 14.0 if amp else 0.0)
            except RuntimeError:
                pass  # not a HackRF
        dev.set_gain(0, float(gain))
        if antenna:
            dev.set_antenna(0, antenna)
    except RuntimeError as exc:
        raise RadioNotFoundError(f"the radio refused the settings (freq {freq:g} Hz, rate {rate:g} S/s, "
                                 f"gain {gain:g} dB): {exc}") from None


class radio_sink(gr.hier_block2):
    def __init__(self, driver: str = "soapy", args: str = "", freq: float = 915e6, rate: float = 1e6,
                 gain: float = 20.0, antenna: str = "", amp: bool = False, ppm: float = 0.0,
                 bandwidth: float = 0.0):
        gr.hier_block2.__init__(self, "semcom_radio_sink", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                                gr.io_signature(0, 0, 0))
        self.driver = driver
        self.dev = _open(driver, args, tx=True)
        _configure(self.dev, driver, args, freq, rate, gain, antenna, amp, ppm, bandwidth)
        self.connect(self, self.dev)

    def set_freq(self, freq):
        (self.dev.set_center_freq(freq, 0) if self.driver == "uhd" else self.dev.set_frequency(0, freq))

    def set_gain(self, gain):
        (self.dev.set_gain(gain, 0) if self.driver == "uhd" else self.dev.set_gain(0, float(gain)))


class radio_source(gr.hier_block2):
    def __init__(self, driver: str = "soapy", args: str = "", freq: float = 915e6, rate: float = 1e6,
                 gain: float = 30.0, antenna: str = "", amp: bool = False, ppm: float = 0.0,
                 bandwidth: float = 0.0):
        gr.hier_block2.__init__(self, "semcom_radio_source", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.driver = driver
        self.dev = _open(driver, args, tx=False)
        _configure(self.dev, driver, args, freq, rate, gain, antenna, amp, ppm, bandwidth)
        self.connect(self.dev, self)

    set_freq = radio_sink.set_freq
    set_gain = radio_sink.set_gain


def find_radios(uhd_args: str = "") -> dict:
    """{"uhd": [device args...], "soapy": [...], "notes": [...]} without
    opening anything."""
    out: dict = {"uhd": [], "soapy": [], "notes": []}
    try:
        from gnuradio.uhd import uhd_python as u

        out["uhd"] = [dict((k, d.get(k)) for k in d.keys()) for d in u.find(u.device_addr_t(uhd_args))]
    except ImportError:
        out["notes"].append("gr-uhd not installed: apt-get install gnuradio")
    except Exception as exc:  # UHD's discovery raises on broken network interfaces
        out["notes"].append(f"UHD discovery failed: {exc}")
    try:
        import SoapySDR  # Debian python3-soapysdr (system site packages)

        out["soapy"] = [dict(d) for d in SoapySDR.Device.enumerate()]
        mods = SoapySDR.listModules()
        if not any("hackrf" in m.lower() for m in mods):
            out["notes"].append("no SoapySDR HackRF module: apt-get install soapysdr-module-hackrf")
    except ImportError:
        out["notes"].append("SoapySDR Python bindings missing, cannot list Soapy devices: "
                            "apt-get install python3-soapysdr soapysdr-module-hackrf")
    except Exception as exc:
        out["notes"].append(f"SoapySDR enumeration failed: {exc}")
    return out
