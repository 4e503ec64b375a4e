package shardlog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Produced;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A Kafka Streams word count (a repartition topic, a changelog), at_least_once and
 * exactly_once_v2 (transactions: the counts read read_committed).
 */
class StreamsTest {
  @Test
  @Timeout(120)
  void wordCountWithARepartitionTopicPurgedByDeleteRecords() throws Exception {
    wordCount(StreamsConfig.AT_LEAST_ONCE, false);
  }

  /**
   * exactly_once_v2 with a kill -9 of the broker halfway through the input: every count is exact
   * (a record counted twice, or an aborted count read, would show in the final values).
   */
  @Test
  @Timeout(150)
  void wordCountExactlyOnceV2AcrossKill9OfTheBroker() throws Exception {
    wordCount(StreamsConfig.EXACTLY_ONCE_V2, true);
  }

  private void wordCount(String guarantee, boolean kill) throws Exception {
    String id = "wc-" + UUID.randomUUID().toString().substring(0, 8);
    String in = id + "-in";
    String out = id + "-out";
    Properties common = new Properties();
    common.put("bootstrap.servers", ClientsTest.bootstrap());
    try (Admin admin = Admin.create(common)) {
      admin
          .createTopics(List.of(new NewTopic(in, 2, (short) 1), new NewTopic(out, 2, (short) 1)))
          .all()
          .get();
    }
    String[] lines = {
      "the quick brown fox", "jumps over the lazy dog", "the dog barks", "a fox and the dog"
    };
    Map<String, Long> want = new HashMap<>();
    int rounds = 50;
    Properties pp = new Properties();
    pp.putAll(common);
    pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    // With a kill, the second half of the input goes in after it.
    int before = kill ? rounds / 2 : rounds;
    java.util.function.BiConsumer<Integer, Integer> produce =
        (from, to) -> {
          try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
            for (int r = from; r < to; r++) {
              for (String l : lines) {
                p.send(new ProducerRecord<>(in, "line-" + r, l));
                for (String w : l.split(" ")) {
                  want.merge(w, 1L, Long::sum);
                }
              }
            }
            p.flush();
          }
        };
    produce.accept(0, before);

    Properties sp = new Properties();
    sp.putAll(common);
    sp.put(StreamsConfig.APPLICATION_ID_CONFIG, id);
    sp.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
    sp.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    sp.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    sp.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
    sp.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 500);
    sp.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    sp.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("streams").toString());
    sp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    StreamsBuilder b = new StreamsBuilder();
    b.<String, String>stream(in)
        .flatMapValues(v -> Arrays.asList(v.split(" ")))
        .groupBy((k, w) -> w)
        .count()
        .toStream()
        .to(out, Produced.with(Serdes.String(), Serdes.Long()));

    Map<String, Long> got = new HashMap<>();
    try (KafkaStreams streams = new KafkaStreams(b.build(), sp)) {
      streams.start();
      Properties cp = new Properties();
      cp.putAll(common);
      cp.put(ConsumerConfig.GROUP_ID_CONFIG, id + "-reader");
      // Under exactly_once_v2 only committed counts are results.
      cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
      cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
      cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
      cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
      try (KafkaConsumer<String, Long> c = new KafkaConsumer<>(cp)) {
        c.subscribe(List.of(out));
        if (kill) {
          // Counts are flowing (transactions committing), then the broker dies.
          long until = System.currentTimeMillis() + 60_000;
          while (got.getOrDefault("the", 0L) == 0 && System.currentTimeMillis() < until) {
            for (ConsumerRecord<String, Long> r : c.poll(Duration.ofMillis(200))) {
              got.put(r.key(), r.value());
            }
          }
          assertTrue(got.getOrDefault("the", 0L) > 0, "counts before the kill");
          assertTrue(TransactionsTest.killBroker() || System.getenv("SHARDLOG_CONTROL") == null);
          produce.accept(before, rounds);
        }
        long deadline = System.currentTimeMillis() + 90_000;
        while (!got.equals(want) && System.currentTimeMillis() < deadline) {
          KafkaStreams.State s = streams.state();
          if (s == KafkaStreams.State.ERROR || s == KafkaStreams.State.NOT_RUNNING) {
            break; // its log says why; fail now instead of at the deadline
          }
          for (ConsumerRecord<String, Long> r : c.poll(Duration.ofMillis(200))) {
            got.put(r.key(), r.value());
          }
        }
      }
      assertEquals(want, got, "final counts");

      // Streams' own topics: the repartition topic (delete policy) and the
      // changelog (compacted), created through the Admin client.
      String repartition = id + "-KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition";
      String changelog = id + "-KSTREAM-AGGREGATE-STATE-STORE-0000000003-changelog";
      try (Admin admin = Admin.create(common)) {
        ConfigResource cl = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
        assertEquals(
            "compact",
            admin.describeConfigs(List.of(cl)).all().get().get(cl).get("cleanup.policy").value());
        // Streams purges what it consumed from the repartition topic
        // (DeleteRecords): its log start moves off 0.
        long deadline = System.currentTimeMillis() + 30_000;
        long start = 0;
        while (start == 0 && System.currentTimeMillis() < deadline) {
          Map<TopicPartition, OffsetSpec> q = new HashMap<>();
          for (int p = 0; p < 2; p++) {
            q.put(new TopicPartition(repartition, p), OffsetSpec.earliest());
          }
          start =
              admin.listOffsets(q).all().get().values().stream()
                  .mapToLong(i -> i.offset())
                  .sum();
          Thread.sleep(200);
        }
        assertTrue(start > 0, "the repartition topic was purged");
      }
    }
  }
}
