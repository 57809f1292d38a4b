using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.Json;

namespace Hub.Cli.Commands;

/// <summary><c>hub classify</c>: label texts (or text pairs) with a sequence classification model.</summary>
public static class ClassifyCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var m = new CliRunner.ModelArgs(kvCache: false);
        var text = new Option<string[]>("--text") { Description = "text to classify (repeat for a batch)", Required = true, AllowMultipleArgumentsPerToken = false };
        var pair = new Option<string[]>("--pair") { Description = "second segment for the --text just before it (sentence-pair tasks)", AllowMultipleArgumentsPerToken = false };
        var maxLength = new Option<int?>("--max-length") { Description = "truncate inputs to this many tokens (default: the model's maximum)" };
        var json = new Option<bool>("--json") { Description = "print {\"results\": [{\"label\", \"score\", \"probs\"}, ...]} in input order" };
        var cmd = new Command("classify", "Classify texts (or text pairs) with a sequence classification model.");
        m.AddTo(cmd);
        foreach (var o in new Option[] { text, pair, maxLength, json }) cmd.Options.Add(o);
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            var (texts, pairs) = TextsAndPairs(r, text.Name, pair.Name);
            using var model = SequenceClassifier.FromPretrained(r.GetValue(m.Model)!, export: true, m.Options(r, quiet: r.GetValue(json)));
            var results = model.Classify(texts, pairs.Any(p => p is not null) ? pairs : null, r.GetValue(maxLength));
            if (r.GetValue(json))
            {
                using var stdout = Console.OpenStandardOutput();
                using var w = new Utf8JsonWriter(stdout);
                w.WriteStartObject();
                w.WriteStartArray("results");
                foreach (var res in results)
                {
                    w.WriteStartObject();
                    w.WriteString("label", res.Label);
                    w.WriteNumber("score", res.Score);
                    w.WriteStartArray("probs");
                    foreach (var p in res.Probabilities) w.WriteNumberValue(p);
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
                w.Flush();
                stdout.WriteByte((byte)'\n');
            }
            else
            {
                for (int i = 0; i < results.Count; i++)
                {
                    var res = results[i];
                    var all = string.Join(", ", res.Labels.Select((l, j) => $"{l} {res.Probabilities[j].ToString("0.0000", CultureInfo.InvariantCulture)}"));
                    var input = pairs[i] is null ? texts[i] : $"{texts[i]} || {pairs[i]}";
                    Console.WriteLine($"{res.Label}\t{res.Score.ToString("0.0000", CultureInfo.InvariantCulture)}\t{input}\t({all})");
                }
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>
    /// Reads --text and --pair in command-line order: a --pair belongs to the --text before it, so
    /// <c>--text a --pair b --text c</c> is [(a, b), (c, null)].
    /// </summary>
    internal static (List<string> Texts, List<string?> Pairs) TextsAndPairs(ParseResult r, string textName, string pairName)
    {
        var texts = new List<string>();
        var pairs = new List<string?>();
        var tokens = r.Tokens;
        for (int i = 0; i < tokens.Count; i++)
        {
            if (tokens[i].Type != TokenType.Option) continue;
            bool isText = tokens[i].Value == textName, isPair = tokens[i].Value == pairName;
            if (!isText && !isPair) continue;
            if (i + 1 >= tokens.Count || tokens[i + 1].Type != TokenType.Argument)
                throw new ArgumentException($"{tokens[i].Value} needs a value");
            var value = tokens[i + 1].Value;
            if (isText) { texts.Add(value); pairs.Add(null); }
            else if (texts.Count == 0) throw new ArgumentException("--pair must follow the --text it belongs to");
            else if (pairs[^1] is not null) throw new ArgumentException($"the --text \"{texts[^1]}\" has two --pair values; give one per --text");
            else pairs[^1] = value;
            i++;
        }
        if (texts.Count == 0) throw new ArgumentException("give at least one --text");
        return (texts, pairs);
    }
}
