using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;

namespace Hub.Cli.Commands;

/// <summary>
/// <c>hub accuracy &lt;model&gt; --weight-format int8|int4 [--group-size N] [--sym|--asym] [--ignored-scope R] [--tokens N]
/// [--prompt TEXT | --prompt-ids IDS | --text TEXT] [--json]</c>: the accuracy cost of weight compression against the float32 export.
/// </summary>
public static class AccuracyCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var m = new CliRunner.ModelArgs();
        var tokens = new Option<int>("--tokens") { Description = "teacher-forced positions to compare", DefaultValueFactory = _ => 256 };
        var prompt = new Option<string?>("--prompt") { Description = "prompt continued greedily by the float32 model (default: the BOS token)" };
        var promptIds = new Option<string?>("--prompt-ids") { Description = "prompt as comma-separated token ids" };
        var text = new Option<string?>("--text") { Description = "compare over this text instead of the model's own continuation" };
        var json = new Option<bool>("--json") { Description = "print the figures as one JSON object" };
        var cmd = new Command("accuracy", "Compare a compressed (int8/int4) export with the float32 export: top-1 agreement and logit error, teacher-forced.");
        m.AddTo(cmd);
        cmd.Options.Add(tokens); cmd.Options.Add(prompt); cmd.Options.Add(promptIds); cmd.Options.Add(text); cmd.Options.Add(json);
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            var options = m.Options(r, quiet: r.GetValue(json));
            if (options.WeightFormat is not (WeightFormat.Int8 or WeightFormat.Int4 or WeightFormat.F16 or WeightFormat.BF16))
                throw new ArgumentException("--weight-format must be int8, int4, f16 or bf16 (the format compared with f32)");
            if (r.GetValue(tokens) < 1) throw new ArgumentException("--tokens must be ≥ 1");
            if (new[] { r.GetValue(prompt), r.GetValue(text), r.GetValue(promptIds) }.Count(v => v is not null) > 1)
                throw new ArgumentException("give at most one of --prompt, --prompt-ids and --text");
            var ids = r.GetValue(promptIds) is { } idText ? CliRunner.ParseIds(idText) : null;
            var rep = CompressionAccuracy.Measure(r.GetValue(m.Model)!, options, r.GetValue(tokens), r.GetValue(prompt), r.GetValue(text), ids);
            string format = r.GetValue(m.Weights.Format)!.ToLowerInvariant();
            if (r.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["model"] = r.GetValue(m.Model),
                    ["weight_format"] = format,
                    ["group_size"] = options.GroupSize,
                    ["symmetric"] = options.Symmetric,
                    ["positions"] = rep.Positions,
                    ["top1_agreement"] = rep.Top1Agreement,
                    ["max_abs_logit_error"] = rep.MaxAbsError,
                    ["mean_abs_logit_error"] = rep.MeanAbsError,
                    ["f32_weight_bytes"] = rep.ReferenceWeightBytes,
                    ["weight_bytes"] = rep.CompressedWeightBytes,
                }.ToJsonString());
                return 0;
            }
            var c = CultureInfo.InvariantCulture;
            Console.WriteLine(string.Format(c, "{0} {1} vs f32, {2} teacher-forced positions", r.GetValue(m.Model), format, rep.Positions));
            Console.WriteLine(string.Format(c, "  top-1 agreement   {0:P2}", rep.Top1Agreement));
            Console.WriteLine(string.Format(c, "  max |Δlogit|      {0:G4}", rep.MaxAbsError));
            Console.WriteLine(string.Format(c, "  mean |Δlogit|     {0:G4}", rep.MeanAbsError));
            Console.WriteLine(string.Format(c, "  weights           {0:N0} B ({1:P1} of f32's {2:N0} B)", rep.CompressedWeightBytes, (double)rep.CompressedWeightBytes / rep.ReferenceWeightBytes, rep.ReferenceWeightBytes));
            return 0;
        }));
        return cmd;
    }
}
