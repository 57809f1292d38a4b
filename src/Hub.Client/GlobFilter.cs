using System.Collections.Concurrent;
using System.Text;
using System.Text.RegularExpressions;

namespace Hub.Client;

/// <summary>
/// Python <c>fnmatch</c> globs as huggingface_hub's <c>filter_repo_objects</c> applies them: <c>*</c> matches any
/// run of characters <b>including <c>/</c></b> (so <c>*.json</c> keeps <c>sub/x.json</c>), <c>?</c> one character,
/// <c>[seq]</c>/<c>[!seq]</c> a set; case-sensitive; a pattern ending in <c>/</c> means the whole folder.
/// </summary>
public static class GlobFilter
{
    private static readonly ConcurrentDictionary<string, Regex> Cache = new(StringComparer.Ordinal);

    /// <summary>True when <paramref name="path"/> matches the glob.</summary>
    public static bool IsMatch(string path, string pattern)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(pattern);
        if (pattern.EndsWith('/')) pattern += "*";
        return Cache.GetOrAdd(pattern, p => new Regex(Translate(p), RegexOptions.CultureInvariant | RegexOptions.Singleline)).IsMatch(path);
    }

    /// <summary>Keeps a path when it matches any allow pattern (if any are given) and no ignore pattern.</summary>
    public static IEnumerable<string> Filter(IEnumerable<string> paths, IEnumerable<string>? allowPatterns, IEnumerable<string>? ignorePatterns)
    {
        var allow = allowPatterns?.ToArray();
        var ignore = ignorePatterns?.ToArray() ?? [];
        foreach (var p in paths)
        {
            if (allow is not null && !allow.Any(a => IsMatch(p, a))) continue;
            if (ignore.Any(i => IsMatch(p, i))) continue;
            yield return p;
        }
    }

    /// <summary>fnmatch.translate: the glob as an anchored regular expression.</summary>
    internal static string Translate(string pat)
    {
        var sb = new StringBuilder("^");
        int i = 0, n = pat.Length;
        while (i < n)
        {
            char c = pat[i++];
            switch (c)
            {
                case '*':
                    while (i < n && pat[i] == '*') i++;
                    sb.Append(".*");
                    break;
                case '?':
                    sb.Append('.');
                    break;
                case '[':
                {
                    int j = i;
                    if (j < n && pat[j] == '!') j++;
                    if (j < n && pat[j] == ']') j++;
                    while (j < n && pat[j] != ']') j++;
                    if (j >= n)
                    {
                        sb.Append("\\[");
                    }
                    else
                    {
                        var stuff = pat[i..j];
                        i = j + 1;
                        var body = new StringBuilder();
                        int k = 0;
                        if (stuff.StartsWith('!')) { body.Append('^'); k = 1; }
                        for (; k < stuff.Length; k++)
                        {
                            char s = stuff[k];
                            if (s == '\\' || s == '[' || s == ']' || (s == '^' && k == 0)) body.Append('\\');
                            body.Append(s);
                        }
                        sb.Append('[').Append(body).Append(']');
                    }
                    break;
                }
                default:
                    sb.Append(Regex.Escape(c.ToString()));
                    break;
            }
        }
        return sb.Append("\\z").ToString();
    }
}
