/// How much of a name reads as words: the difference between a long descriptive host name
/// (`contoso-analytics-dashboard-frontend`) and encoded data (`mfrggzdfmztwq4lj…`), which can have the
/// same length and character entropy.
///
/// A word here is a run of three or more letters (split at digits, `-`, `_` and dots) whose vowel share
/// is between a quarter and three quarters, with no more than four consonants or three vowels in a row:
/// pronounceable, without a dictionary. Hex almost never has such runs (its letters come one or two at a
/// time), base32/base64 have them by chance in about a quarter of their characters; descriptive names
/// are nearly all words.
enum DNSNameShape {
    /// Letters inside word-like runs, and letters plus digits in all, of `s` (dots ignored).
    static func wordCharacters(_ s: UnsafeRawBufferPointer) -> (words: Int, alphanumerics: Int) {
        var words = 0, alnum = 0
        var run = 0, vowels = 0, consonantRun = 0, vowelRun = 0, longestConsonants = 0, longestVowels = 0
        func endRun() {
            if run >= 3 && vowels * 4 >= run && vowels * 4 <= run * 3 && longestConsonants <= 4 && longestVowels <= 3 { words += run }
            run = 0; vowels = 0; consonantRun = 0; vowelRun = 0; longestConsonants = 0; longestVowels = 0
        }
        for c in s {
            let l = c | 0x20
            if l >= 0x61 && l <= 0x7A {
                alnum += 1
                run += 1
                if l == 0x61 || l == 0x65 || l == 0x69 || l == 0x6F || l == 0x75 || l == 0x79 {
                    vowels += 1; vowelRun += 1; consonantRun = 0
                    longestVowels = max(longestVowels, vowelRun)
                } else {
                    consonantRun += 1; vowelRun = 0
                    longestConsonants = max(longestConsonants, consonantRun)
                }
            } else {
                if c >= 0x30 && c <= 0x39 { alnum += 1 }
                endRun()
            }
        }
        endRun()
        return (words, alnum)
    }
}
