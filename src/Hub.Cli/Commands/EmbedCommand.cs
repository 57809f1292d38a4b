using System.CommandLine;
using System.Globalization;
using System.Text.Json;

namespace Hub.Cli.Commands;

/// <summary><c>hub embed</c>: sentence embeddings following the repo's sentence-transformers pipeline.</summary>
public static class EmbedCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var m = new CliRunner.ModelArgs(kvCache: false);
        var text = new Option<string[]>("--text") { Description = "text to embed (repeat for a batch)", Required = true, AllowMultipleArgumentsPerToken = false };
        var maxLength = new Option<int?>("--max-length") { Description = "truncate inputs to this many tokens (default: sentence_bert_config.json max_seq_length)" };
        var json = new Option<bool>("--json") { Description = "print {\"embeddings\": [[...], ...]} in input order" };
        var cmd = new Command("embed", "Embed texts with a sentence-embedding model (pooling and normalization from modules.json).");
        m.AddTo(cmd);
        foreach (var o in new Option[] { text, maxLength, json }) cmd.Options.Add(o);
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            var texts = r.GetValue(text) ?? [];
            if (texts.Length == 0) throw new ArgumentException("give at least one --text");
            if (r.GetValue(maxLength) is int n && n < 2) throw new ArgumentException($"--max-length must be at least 2 ([CLS] and [SEP]), got {n}");
            using var model = TextEncoder.FromPretrained(r.GetValue(m.Model)!, export: true, m.Options(r, quiet: r.GetValue(json)));
            var embeddings = model.Embed(texts, r.GetValue(maxLength));
            if (r.GetValue(json))
            {
                JsonOut.WriteMatrix("embeddings", embeddings);
            }
            else
            {
                for (int i = 0; i < texts.Length; i++)
                {
                    var head = string.Join(" ", embeddings[i].Take(6).Select(v => v.ToString("0.0000", CultureInfo.InvariantCulture)));
                    Console.WriteLine($"[{i}] {embeddings[i].Length} dims: {head} ...\t{texts[i]}");
                }
                if (texts.Length > 1)
                {
                    Console.WriteLine("cosine similarity:");
                    for (int i = 0; i < texts.Length; i++)
                        Console.WriteLine($"[{i}] " + string.Join(" ", embeddings.Select(e => TextEncoder.CosineSimilarity(embeddings[i], e).ToString("0.000", CultureInfo.InvariantCulture))));
                }
            }
            return 0;
        }));
        return cmd;
    }
}
