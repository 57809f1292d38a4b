using System.Text;
using Hub.Tokenization;

namespace Hub.Tokenization.Tests;

public sealed class UnicodeNormalizerTests
{
    private static string Hex(string s) => string.Join(" ", s.EnumerateRunes().Select(r => r.Value.ToString("X4")));

    [Theory]
    [InlineData("Café", "0043 0061 0066 00E9", "0043 0061 0066 0065 0301")]
    [InlineData("e\u0301", "00E9", "0065 0301")]
    [InlineData("한국", "D55C AD6D", "1112 1161 11AB 1100 116E 11A8")]
    [InlineData("a\u0302\u0323", "1EAD", "0061 0323 0302")]                 // canonical reordering, then composition
    [InlineData("\u212B", "00C5", "0041 030A")]                             // Angstrom sign is a singleton
    public void Canonical_forms_match_unicode(string input, string nfc, string nfd)
    {
        Assert.Equal(nfc, Hex(UnicodeNormalizer.Normalize(input, NormalizationForm.FormC)));
        Assert.Equal(nfd, Hex(UnicodeNormalizer.Normalize(input, NormalizationForm.FormD)));
    }

    [Fact]
    public void Compatibility_forms_fold_ligatures_and_fullwidth()
    {
        Assert.Equal("fi A 1", UnicodeNormalizer.Normalize("ﬁ Ａ ①", NormalizationForm.FormKC));
        Assert.Equal("cafe deja vu Angstrom", UnicodeNormalizer.StripAccents("café déjà vu Ångström"));
        Assert.Equal("plain ascii", UnicodeNormalizer.StripAccents("plain ascii"));
    }
}
