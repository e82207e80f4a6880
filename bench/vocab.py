"""The words, categories and places that synthetic listings are made of.

Real marketplace text is a small set of very frequent words (``jual``, ``murah``,
``bekas``), topic words that cluster by category (``sepeda lipat``) and a long tail
of rare words. Search cost depends on exactly that shape (posting-list lengths and
co-occurrence), so the generator reproduces it: real Indonesian and English words
per category, generic words shared by every category, and a few thousand synthetic
but pronounceable words drawn with Zipf weights for the tail.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from typing import Final

# category -> topic words (Indonesian and English, as sellers actually mix them)
TOPICS: Final[dict[str, str]] = {
    "vehicles/bicycles": "sepeda lipat polygon united brompton gunung fixie bmx ban rem sadel "
    "pedal gear shimano bike folding mtb roadbike",
    "vehicles/motorcycles": "motor honda yamaha suzuki kawasaki vario beat scoopy nmax aerox "
    "supra matic bebek helm knalpot motorcycle scooter",
    "vehicles/cars": "mobil toyota avanza innova xenia daihatsu brio jazz ertiga pajero velg "
    "car sedan manual transmisi",
    "vehicles/parts": "oli aki spion lampu jok busi kampas filter parts spare sparepart",
    "electronics/phones": "hp handphone samsung iphone xiaomi oppo vivo realme android casing "
    "charger phone smartphone",
    "electronics/laptops": "laptop asus lenovo acer macbook thinkpad notebook ram ssd prosesor "
    "intel ryzen keyboard",
    "electronics/cameras": "kamera canon nikon sony fujifilm lensa mirrorless dslr tripod "
    "camera lens",
    "electronics/audio": "speaker headset earphone bluetooth soundbar amplifier audio headphone",
    "electronics/tv": "tv televisi led smart monitor remote antena",
    "electronics/gaming": "playstation ps4 ps5 nintendo switch xbox stik konsol game controller "
    "console",
    "home/furniture": "kursi meja lemari kasur sofa rak ranjang bantal furniture chair table "
    "wardrobe",
    "home/kitchen": "kompor panci wajan kulkas dispenser blender rice cooker piring gelas",
    "home/appliances": "mesin cuci ac kipas angin setrika vacuum",
    "home/garden": "tanaman pot bibit pupuk bunga anggrek selang",
    "fashion/men": "kemeja kaos celana jaket batik jeans shirt jacket pria",
    "fashion/women": "gamis dress rok blouse hijab kerudung tunik wanita",
    "fashion/shoes": "sepatu sandal sneakers nike adidas vans converse shoes",
    "fashion/bags": "tas ransel dompet koper backpack bag wallet",
    "fashion/watches": "jam tangan casio seiko watch strap",
    "baby/gear": "stroller bayi gendongan boks mainan anak carseat",
    "books/textbooks": "buku novel komik kamus pelajaran book",
    "hobbies/music": "gitar piano keyboard drum biola ukulele guitar akustik",
    "hobbies/sports": "raket badminton bola futsal sepakbola dumbbell treadmill matras yoga",
    "hobbies/collectibles": "koleksi perangko koin antik diecast figure lego",
    "pets/supplies": "kucing anjing kandang makanan ikan aquarium pasir cat dog",
    "property/rent": "kost kontrakan rumah kamar sewa bulanan apartemen ruko",
    "property/sale": "tanah rumah shm kavling perumahan",
    "services/repair": "servis service reparasi panggilan teknisi",
    "jobs/part-time": "lowongan kerja paruh waktu admin kurir",
    "food/homemade": "kue kering sambal keripik frozen catering katering kopi madu",
}

# Words of every category, most frequent first (their order sets their Zipf rank).
GENERIC: Final = tuple(
    """jual murah bekas baru mulus original cepat nego kondisi bisa cod lengkap normal
    siap pakai harga ori second seken butuh uang garansi resmi fullset bonus gratis ongkir
    kirim luar kota jarang dipakai lecet pemakaian pribadi pas terjangkau promo diskon hitam
    putih merah biru hijau abu kuning ukuran besar kecil sedang warna tahun minus dus nota
    istimewa used new cheap fast sale good condition mint works perfectly only serious
    buyer warranty box like rare limited edition free shipping pickup ready stock mantap
    awet kuat ringan tebal tipis halus bersih wangi rapi terawat jujur amanah langsung
    pemilik tangan pertama surat pajak hidup panjang bpkb stnk plat asli gres segel
    lokasi alamat hubungi chat wa sms telepon siang malam pagi sore hari minggu sabtu
    libur kantor rumah tinggal pindah butuh dana mendesak tukar tambah barter ambil
    tempat antar area sekitar dekat jalan raya gang komplek ruko depan belakang atas
    bawah kiri kanan tengah semua fungsi aman tidak ada kendala masalah minusnya
    pemakaian wajar sesuai foto real pic asli bukan kw replika grade premium super
    standar biasa keren cantik bagus elegan simpel modern klasik vintage retro unik
    lucu imut gaul trendy kekinian terbaru terlaris favorit populer hemat irit listrik
    bensin tenaga mesin halus tarikan enteng nyaman empuk adem sejuk dingin panas
    hangat lembut kasar awet tahan lama air anti gores pecah retak penyok karat
    jamur noda bekas pakai perlu sedikit perbaikan servis rutin bengkel resmi
    the and with for in very good excellent condition selling because moving
    upgrade need money price firm negotiable message me details cash transfer
    meet nearby delivery available original receipt included charger cable case
    cover manual spare extra bundle set pair piece unit size color black white""".split()
)

CATEGORIES: Final = tuple(TOPICS)

PLACES: Final = (
    "Sleman, Yogyakarta",
    "Bantul, Yogyakarta",
    "Kota Yogyakarta",
    "Jakarta Selatan",
    "Jakarta Pusat",
    "Jakarta Barat",
    "Jakarta Timur",
    "Jakarta Utara",
    "Depok, Jawa Barat",
    "Bekasi, Jawa Barat",
    "Bogor, Jawa Barat",
    "Bandung, Jawa Barat",
    "Cimahi, Jawa Barat",
    "Tangerang, Banten",
    "Tangerang Selatan, Banten",
    "Serang, Banten",
    "Semarang, Jawa Tengah",
    "Solo, Jawa Tengah",
    "Magelang, Jawa Tengah",
    "Purwokerto, Jawa Tengah",
    "Surabaya, Jawa Timur",
    "Malang, Jawa Timur",
    "Sidoarjo, Jawa Timur",
    "Kediri, Jawa Timur",
    "Denpasar, Bali",
    "Badung, Bali",
    "Mataram, NTB",
    "Kupang, NTT",
    "Medan, Sumatera Utara",
    "Padang, Sumatera Barat",
    "Pekanbaru, Riau",
    "Palembang, Sumatera Selatan",
    "Bandar Lampung, Lampung",
    "Batam, Kepulauan Riau",
    "Pontianak, Kalimantan Barat",
    "Balikpapan, Kalimantan Timur",
    "Samarinda, Kalimantan Timur",
    "Banjarmasin, Kalimantan Selatan",
    "Makassar, Sulawesi Selatan",
    "Manado, Sulawesi Utara",
    "Ambon, Maluku",
    "Jayapura, Papua",
)

_ONSETS: Final = "b c d g h j k l m n p r s t w y ny ng".split()
_VOWELS: Final = "a i u e o".split()
_CODAS: Final = ("", "", "", "n", "ng", "r", "k", "h", "s", "t", "l")
TAIL_SIZE: Final = 6000


@dataclass(frozen=True, slots=True)
class Weighted:
    """Words with cumulative Zipf weights, for ``random.choices(cum_weights=...)``."""

    words: tuple[str, ...]
    cum_weights: tuple[float, ...]

    def pick(self, rng: random.Random, k: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cum_weights, k=k)


def zipf(words: tuple[str, ...], offset: float = 2.0, exponent: float = 1.0) -> Weighted:
    """Rank r gets weight 1 / (r + offset) ** exponent: a few words dominate."""
    return Weighted(
        words, tuple(accumulate(1.0 / (r + offset) ** exponent for r in range(len(words))))
    )


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS)


@lru_cache(maxsize=4)
def tail_words(seed: int, size: int = TAIL_SIZE) -> tuple[str, ...]:
    """``size`` distinct pronounceable non-words ("kelambing", "sorutan"), in rank order."""
    rng = random.Random(f"tail:{seed}")
    real = set(GENERIC).union(*(t.split() for t in TOPICS.values()))
    found: dict[str, None] = {}
    while len(found) < size:
        word = "".join(_syllable(rng) for _ in range(rng.randint(2, 4))) + rng.choice(_CODAS)
        if word not in real and 4 <= len(word) <= 14:
            found[word] = None
    return tuple(found)


def mix(parts: list[tuple[Weighted, float]]) -> Weighted:
    """One distribution that picks from each part with the given share, so a text
    of k words is a single ``choices`` call (no per-word branching, no shuffle)."""
    words: list[str] = []
    weights: list[float] = []
    for part, share in parts:
        total = part.cum_weights[-1]
        previous = 0.0
        for word, cum in zip(part.words, part.cum_weights, strict=True):
            words.append(word)
            weights.append((cum - previous) / total * share)
            previous = cum
    return Weighted(tuple(words), tuple(accumulate(weights)))


# Shares of description words: generic, the category's own topic words, the tail.
DESCRIPTION_MIX: Final = (0.45, 0.2, 0.35)


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Everything the generator draws words from, built once per seed."""

    generic: Weighted
    tail: Weighted
    topics: dict[str, tuple[str, ...]]
    descriptions: dict[str, Weighted]  # per category


@lru_cache(maxsize=4)
def vocabulary(seed: int) -> Vocabulary:
    generic = zipf(tuple(dict.fromkeys(GENERIC)), offset=3.0)
    tail = zipf(tail_words(seed), offset=10.0)
    topics = {cat: tuple(words.split()) for cat, words in TOPICS.items()}
    share_generic, share_topic, share_tail = DESCRIPTION_MIX
    descriptions = {
        cat: mix(
            [(generic, share_generic), (zipf(words, 1.0, 0.0), share_topic), (tail, share_tail)]
        )
        for cat, words in topics.items()
    }
    return Vocabulary(generic, tail, topics, descriptions)
