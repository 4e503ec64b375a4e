package shardlog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** kafka-clients with its defaults against shardlog's Kafka listener. */
class ClientsTest {
  static String bootstrap() {
    String b = System.getenv("SHARDLOG_KAFKA");
    if (b == null) {
      throw new IllegalStateException("SHARDLOG_KAFKA (the broker's Kafka address) is not set");
    }
    return b;
  }

  static Properties common() {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    return p;
  }

  @Test
  @Timeout(60)
  void producerWithItsDefaultsAndAClassicGroupConsumerRoundTrip() throws Exception {
    String topic = "java-" + UUID.randomUUID();
    try (Admin admin = Admin.create(common())) {
      admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get();
    }
    Properties pp = common();
    pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    int n = 1000;
    List<RecordMetadata> acks = new ArrayList<>();
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
      List<java.util.concurrent.Future<RecordMetadata>> fs = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        fs.add(producer.send(new ProducerRecord<>(topic, "key-" + (i % 17), "value-" + i)));
      }
      for (var f : fs) {
        acks.add(f.get());
      }
    }
    assertEquals(n, acks.size());
    Properties cp = common();
    cp.put(ConsumerConfig.GROUP_ID_CONFIG, "g-" + topic);
    cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    cp.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
    List<ConsumerRecord<String, String>> got = new ArrayList<>();
    try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
      consumer.subscribe(List.of(topic));
      long deadline = System.currentTimeMillis() + 30_000;
      while (got.size() < n && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
          got.add(r);
        }
      }
      consumer.commitSync();
    }
    assertEquals(n, got.size());
    // Per key, values in the order sent.
    Map<String, Integer> last = new java.util.HashMap<>();
    for (ConsumerRecord<String, String> r : got) {
      int i = Integer.parseInt(r.value().substring("value-".length()));
      Integer prev = last.put(r.key(), i);
      assertTrue(prev == null || prev < i, r.key() + ": " + i + " after " + prev);
    }
  }
}
