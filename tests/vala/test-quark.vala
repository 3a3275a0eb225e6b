/* Vala binding test: compiled against the generated quark-1.0 vapi.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
const float[] Q1 = { 1.27f, -1.27f, 0.5f, 0.3f, 0.004f, 0.125f, -0.05f, 0.635f };
const int8[] Q1_CODES = { 127, -128, 50, 30, 0, 13, -5, 64 };

void test_calibration () {
    var session = new Quark.Calibration ();
    float[] b1 = { 1.0f, -2.0f };
    float[] b2 = { 4.0f, 0.5f };
    int64[] shape = { 2 };
    try {
        session.observe_floats ("fc", Quark.Role.INPUT, b1, shape);
        session.observe_floats ("fc", Quark.Role.INPUT, b2, shape);
        var spec = new Quark.TensorSpec (Quark.DType.INT8, Quark.QScheme.PER_TENSOR);
        float lo, hi;
        session.compute_range ("fc", Quark.Role.INPUT, spec, out lo, out hi);
        /* min/max by default */
        assert (lo == -2.0f && hi == 4.0f);
        var path = Path.build_filename (Environment.get_tmp_dir (), "quark-vala-%s.json".printf (Uuid.string_random ()));
        session.save (path);
        var loaded = Quark.Calibration.load (path);
        assert (loaded.get_n_batches ("fc", Quark.Role.INPUT) == 2);
        FileUtils.unlink (path);
    } catch (Error e) {
        error ("%s", e.message);
    }
}

void test_backend_listed () {
    var registry = Quark.Registry.get_default ();
    bool found = false;
    var backends = registry.list_backends ();
    for (uint i = 0; i < backends.length; i++) {
        var backend = backends[i];
        if (backend.get_name () == "quark") {
            found = true;
            assert (backend.version == Quark.VERSION_S);
            assert (backend.supports_dtype (Quark.DType.INT8));
        }
    }
    assert (found);
}

void test_exact_integers () {
    var registry = Quark.Registry.get_default ();
    try {
        var config = registry.config_from_string (
            "{\"backend\": \"quark\", \"global_quant_config\": {\"weight\": {\"dtype\": \"int8\", \"qscheme\": \"per_tensor\"}}}", -1);
        var model = new Quark.Model ();
        int64[] shape = { 2, 4 };
        model.add_tensor (new Quark.Tensor.from_floats ("fc.weight", shape, Q1));
        var quantizer = registry.new_quantizer (config);
        var out = quantizer.quantize_model (model, null, null);
        unowned uint8[] codes = out.get_tensor ("fc.weight").get_data ().get_data ();
        assert (codes.length == 8);
        for (int i = 0; i < 8; i++)
            assert ((int8) codes[i] == Q1_CODES[i]);
        unowned uint8[] scale = out.get_tensor ("fc.weight_scale").get_data ().get_data ();
        uint32 bits = scale[0] | (scale[1] << 8) | (scale[2] << 16) | ((uint32) scale[3] << 24);
        assert (bits == 0x3C23328F);
    } catch (Error e) {
        error ("unexpected error: %s", e.message);
    }
}

void test_unknown_key () {
    var registry = Quark.Registry.get_default ();
    try {
        registry.config_from_string (
            "{\"backend\": \"quark\", \"global_quant_config\": {\"weight\": {\"dtype\": \"int8\", \"bits\": 8}}}", -1);
        assert_not_reached ();
    } catch (Quark.ConfigError.UNKNOWN_KEY e) {
        assert (e.message.has_prefix ("global_quant_config.weight.bits: unknown key"));
    } catch (Error e) {
        error ("wrong error: %s", e.message);
    }
}

void test_preset_and_errors () {
    var registry = Quark.Registry.get_default ();
    try {
        var config = registry.config_for_preset (null, "w_int4_per_group_sym");
        assert (config.get_backend_name () == "quark");
    } catch (Error e) {
        error ("%s", e.message);
    }
    try {
        registry.config_for_preset ("quark", "int4_wo128");
        assert_not_reached ();
    } catch (Error e) {
        assert (e is Quark.ConfigError.INVALID_VALUE);
        assert ("did you mean \"int4_wo_128\"?" in e.message);
    }
    try {
        Quark.Model.load ("/nonexistent/model", null);
        assert_not_reached ();
    } catch (Error e) {
        assert (e is Quark.Error.NOT_FOUND);
    }
    var model = new Quark.Model ();
    float[] w = { 1.0f, 2.0f, 3.0f, 4.0f };
    int64[] shape = { 2, 2 };
    var cancellable = new Cancellable ();
    cancellable.cancel ();
    try {
        model.add_tensor (new Quark.Tensor.from_floats ("fc.weight", shape, w));
        var quantizer = registry.new_quantizer (registry.config_for_preset (null, "int8_per_channel_wo"));
        quantizer.quantize_model (model, null, cancellable);
        assert_not_reached ();
    } catch (Error e) {
        assert (e is IOError.CANCELLED);
    }
}

/* The native runtime: a tokenizer and a model from tests/data/runtime,
 * perplexity asynchronously on a main loop */
void test_runtime () {
    var dir = Path.build_filename (Environment.get_variable ("G_TEST_SRCDIR"), "data", "runtime", "tiny-llama");
    try {
        var tokenizer = new Quark.Tokenizer.from_file (dir);
        uint32[] ids = tokenizer.encode ("a bad cab", -1, false);
        assert (ids.length == 9 && ids[0] == 2 && ids[1] == 28);
        assert (tokenizer.decode (ids, false) == "a bad cab");

        var executor = new Quark.Executor.from_path (dir);
        uint32[] text = new uint32[100];
        for (int i = 0; i < 100; i++)
            text[i] = (uint32) ((i * 7) % 40);
        double ppl;
        uint64 n;
        executor.evaluate (null, text, 32, 32, null, out ppl, null, null, out n);
        assert (n == 96 && ppl > 1.0);

        var loop = new MainLoop ();
        double async_ppl = 0;
        uint64 last = 0;
        executor.progress.connect ((done, total) => { last = done; });
        executor.evaluate_async.begin (null, text, 32, 32, null, (obj, res) => {
            try {
                executor.evaluate_async.end (res, out async_ppl, null, null, null);
            } catch (Error e) {
                error ("%s", e.message);
            }
            loop.quit ();
        });
        loop.run ();
        assert (async_ppl == ppl && last == 100);
    } catch (Error e) {
        error ("%s", e.message);
    }
}

/* AWQ's search with a rounding delegate written in Vala; α = 0 alone is
 * the identity, and the output error with H = I is the squared distance */
void test_awq () {
    try {
        float[] values = { 0.9f, -0.2f, 0.05f, 0.4f, -0.7f, 0.3f, -0.15f, 0.6f };
        int64[] shape = { 2, 4 };
        var w = new Quark.Tensor.from_floats ("w", shape, values);
        double[] eye = new double[16];
        for (int i = 0; i < 4; i++)
            eye[i * 5] = 1.0;
        uint8[] eye_bytes = new uint8[16 * sizeof (double)];
        Memory.copy (eye_bytes, eye, eye_bytes.length);
        int64[] square = { 4, 4 };
        var gram = new Quark.Tensor ("gram", Quark.DType.FLOAT64, square, new Bytes (eye_bytes));
        float[] m = { 2.0f, 0.5f, 1.0f, 4.0f };
        int64[] four = { 4 };
        var mean = new Quark.Tensor.from_floats ("mean", four, m);
        int calls = 0;
        Quark.AwqRoundFunc round = (t) => {
            calls++;
            float[] x = t.to_floats ();
            for (int i = 0; i < x.length; i++)
                x[i] = (int) (x[i] * 4 + (x[i] >= 0 ? 0.5f : -0.5f)) / 4.0f;   /* to quarters, ties away */
            return new Quark.Tensor.from_floats (t.get_name (), shape, x);
        };
        Quark.Tensor[] weights = { w };
        double ratio;
        var scale = Quark.awq_search_scale (weights, gram, mean, 1, round, out ratio);
        float[] s = scale.to_floats ();
        assert (ratio == 0 && s.length == 4 && s[0] == 1 && s[3] == 1 && calls == 1);
        var rounded = round (w);
        float[] r = rounded.to_floats ();
        double want = 0;
        for (int i = 0; i < 8; i++)
            want += (values[i] - r[i]) * (values[i] - r[i]);
        double diff = Quark.awq_output_error (w, rounded, gram) - want;
        assert (diff < 1e-6 && diff > -1e-6);
    } catch (Error e) {
        error ("%s", e.message);
    }
}

/* Activations from Vala: MXInt8 blocks, dynamic (Brevitas's scale
 * 2^(floor(log2 amax) - 7): amax 1.5 gives 2^-7, and -1.5 itself clips to
 * -128, -1 once dequantized); a static spec's quantization order. */
void test_activations () {
    var registry = Quark.Registry.get_default ();
    try {
        var config = registry.config_from_string (
            "{\"backend\": \"brevitas\", \"global_quant_config\": {\"input_tensors\": {\"preset\": \"MXInt8Act\"}}}", -1);
        var quantizer = registry.new_quantizer (config);
        var spec = config.get_tensor_spec ("fc", "Linear", Quark.Role.INPUT);
        float[] values = new float[32];
        for (int i = 0; i < 32; i++)
            values[i] = (i % 2 == 0 ? 1 : -1) * (float) i / 31.0f * 1.5f;
        int64[] shape = { 1, 32 };
        var x = new Quark.Tensor.from_floats ("x", shape, values);
        var out = quantizer.quantize_activation (x, spec, null, null);
        unowned uint8[] codes = out.get_tensor ("x").get_data ().get_data ();
        assert ((int8) codes[31] == -128);   /* -1.5 / 2^-7 = -192, clamped to the full range */
        unowned uint8[] scale = out.get_tensor ("x_scale").get_data ().get_data ();
        uint32 bits = scale[0] | (scale[1] << 8) | (scale[2] << 16) | ((uint32) scale[3] << 24);
        assert (bits == 0x3C000000);   /* 2^-7 */
        var fq = quantizer.fake_quantize_activation (x, spec, null, null);
        unowned uint8[] fqb = fq.get_data ().get_data ();
        assert (fqb.length == 128);
        uint32 last = fqb[124] | (fqb[125] << 8) | (fqb[126] << 16) | ((uint32) fqb[127] << 24);
        assert (last == 0xBF800000);   /* -128 * 2^-7 = -1 */

        config = registry.config_from_string (
            "{\"backend\": \"brevitas\", \"global_quant_config\": {\"input_tensors\": {\"preset\": \"Int8ActPerTensorFloat\"}}}", -1);
        spec = config.get_tensor_spec ("fc", "Linear", Quark.Role.INPUT);
        assert (spec.get_quant_order () == Quark.QuantOrder.BREVITAS);
    } catch (Error e) {
        error ("unexpected error: %s", e.message);
    }
}

int main (string[] args) {
    Test.init (ref args);
    Test.add_func ("/vala/backend-listed", test_backend_listed);
    Test.add_func ("/vala/exact-integers", test_exact_integers);
    Test.add_func ("/vala/unknown-key", test_unknown_key);
    Test.add_func ("/vala/calibration", test_calibration);
    Test.add_func ("/vala/preset-and-errors", test_preset_and_errors);
    Test.add_func ("/vala/runtime", test_runtime);
    Test.add_func ("/vala/awq", test_awq);
    Test.add_func ("/vala/activations", test_activations);
    return Test.run ();
}
